//! The `gpt2` command line: clap's parsing and the subcommands of `src/commands/`, on top of the
//! `gpt2` library (`src/lib.rs`), which knows nothing of clap.

use clap::{Parser, Subcommand};
mod commands;

/// GPT-2 from scratch: train, sample, eval, export, tokenize, prepare data, benchmark.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train GPT-2 (on the shipped Shakespeare text unless --train-data is given).
    Train(Box<commands::train::Args>),
    /// Generate text from a trained model, printing it as it comes.
    Sample(commands::sample::Args),
    /// Time training steps and each layer kind; the last line is JSON.
    Bench(commands::bench::Args),
    /// Print the GPT-2 token ids of a text file (or stdin), or decode ids back to text.
    Tokenize(commands::tokenize::Args),
    /// Train your own byte-level BPE tokenizer (`tokenizer train`), for every command's --tokenizer.
    Tokenizer(commands::tokenizer::Args),
    /// A model's validation loss and HellaSwag accuracy; the last line is JSON.
    Eval(commands::eval::Args),
    /// Write a model as a Hugging Face directory (transformers, vLLM) and/or an llm.c model file.
    Export(commands::export::Args),
    /// Turn text / .jsonl files into llm.c token shards (train and val) plus llm.c's tokenizer file.
    Prepare(commands::prepare::Args),
    /// Serve a model behind OpenAI's completions API, with metrics, a web page and a training view.
    Serve(commands::serve::Args),
    /// Bytes of memory training needs, buffer group by group, and the largest batch per card; the last line is JSON.
    Memory(commands::memory::Args),
    /// Draw the training curves of a `train --log` JSONL file as SVG or PNG.
    Plot(commands::plot::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Train(a) => commands::train::run(a),
        Command::Sample(a) => commands::sample::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Tokenize(a) => commands::tokenize::run(a),
        Command::Tokenizer(a) => commands::tokenizer::run(a),
        Command::Prepare(a) => commands::prepare::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Plot(a) => commands::plot::run(a),
        Command::Memory(a) => commands::memory::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Export(a) => commands::export::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
