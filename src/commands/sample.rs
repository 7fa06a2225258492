//! `sample`: generate text from a trained model, printing it as it comes.

use anyhow::{bail, Result};
use gpt2::config::ModelConfig;
use gpt2::cpu::gpt2::CpuKernels;
use gpt2::rng::Rng;
use gpt2::sample::generate_with;
use gpt2::tokenizer::Tokenizer;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The model: an llm.c model file, one of our checkpoints, or a Hugging Face GPT-2 (directory or .safetensors).
    #[arg(long)]
    pub init: PathBuf,
    /// Text to continue [default: start a new document after <|endoftext|>].
    #[arg(long)]
    pub prompt: Option<String>,
    /// How many tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub tokens: usize,
    /// Softmax temperature; 0 picks the most likely token every time.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Sample only among the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Seed of the sampling's random draws (the same seed, model and prompt give the same text).
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    /// The CPU layers to run: the fast ones, or the readable reference of src/cpu/*.rs (slower; a
    /// debugger steps into the code you read).
    #[arg(long, default_value = "fast", value_parser = super::choice::<CpuKernels>())]
    pub kernels: CpuKernels,
    /// The tokenizer the model was trained with (a directory from `tokenizer train`) [default: GPT-2's];
    /// a model whose file records another is refused.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    let ckpt = gpt2::model::load_model(&args.init)?;
    if args.temperature.is_nan() || args.temperature < 0.0 {
        bail!("--temperature must be 0 or more, got {}", args.temperature);
    }
    let tokenizer = Tokenizer::gpt2_or_dir(args.tokenizer.as_deref())?;
    ckpt.check_tokenizer(&args.init, &tokenizer)?;
    let prompt = match &args.prompt {
        Some(text) if !text.is_empty() => tokenizer.encode(text),
        _ => vec![tokenizer.eot_token()],
    };
    if let Some(text) = &args.prompt {
        print!("{text}");
    }
    print_sample(
        args.kernels,
        &ckpt.config,
        &ckpt.params,
        &tokenizer,
        &prompt,
        args.tokens,
        args.temperature,
        args.top_k,
        &mut Rng::new(args.seed),
    )?;
    println!();
    Ok(())
}

/// Generates from `prompt` and prints the text as it comes. Used by `sample` and by `train --sample-every`.
#[allow(clippy::too_many_arguments)]
pub fn print_sample(
    kernels: CpuKernels,
    config: &ModelConfig,
    params: &[f32],
    tokenizer: &Tokenizer,
    prompt: &[u32],
    n: usize,
    temperature: f32,
    top_k: usize,
    rng: &mut Rng,
) -> Result<()> {
    if config.vocab_size != tokenizer.vocab_size() {
        bail!(
            "the model has a vocabulary of {} tokens, the tokenizer {}: give the --tokenizer it was trained with",
            config.vocab_size,
            tokenizer.vocab_size()
        );
    }
    let eot = tokenizer.eot_token();
    let mut decoder = tokenizer.stream_decoder();
    let mut stdout = std::io::stdout();
    let mut result = Ok(());
    generate_with(kernels, *config, params, prompt, n, temperature, top_k, rng, |token| {
        if result.is_err() {
            return;
        }
        // at a document boundary, first print what the decoder holds back of an unfinished character
        let text = if token == eot { Ok(decoder.finish() + "\n<|endoftext|>\n") } else { decoder.push(token) };
        result = text.map_err(anyhow::Error::from).and_then(|t| {
            stdout.write_all(t.as_bytes())?;
            stdout.flush()?;
            Ok(())
        });
    });
    result?;
    print!("{}", decoder.finish());
    Ok(())
}
