//! `export`: write a model for other tools: a Hugging Face directory (`transformers`, vLLM, the Hub;
//! `src/model/hf.rs`) and/or llm.c's model file (`src/model/checkpoint.rs`).

use anyhow::{bail, Result};
use gpt2::model::hf::{self, ExportDtype};
use std::path::PathBuf;

/// Arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: an llm.c model file, one of our checkpoints, or a Hugging Face GPT-2 (directory or .safetensors).
    #[arg(long)]
    pub init: PathBuf,
    /// Write a Hugging Face GPT2LMHeadModel directory here (config.json, model.safetensors, tokenizer files).
    #[arg(long)]
    pub hf: Option<PathBuf>,
    /// The dtype of the Hugging Face weights.
    #[arg(long, default_value = "f32", value_parser = super::choice::<ExportDtype>())]
    pub dtype: ExportDtype,
    /// Write llm.c's model file (version 3, fp32) here.
    #[arg(long)]
    pub llmc: Option<PathBuf>,
    /// The tokenizer the model was trained with (a directory from `tokenizer train`) [default: GPT-2's]:
    /// checked against the model, and its files written into the --hf directory.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    if args.hf.is_none() && args.llmc.is_none() {
        bail!("nothing to write: give --hf DIR and/or --llmc FILE");
    }
    let ckpt = gpt2::model::load_model(&args.init)?;
    let tokenizer = gpt2::tokenizer::Tokenizer::gpt2_or_dir(args.tokenizer.as_deref())?;
    ckpt.check_tokenizer(&args.init, &tokenizer)?;
    if let Some(dir) = &args.hf {
        let tok_dir = args.tokenizer.as_deref();
        for path in hf::save_dir_with_tokenizer(dir, &ckpt.config, &ckpt.params, args.dtype, tok_dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(path) = &args.llmc {
        gpt2::model::checkpoint::save_llmc_with_tokenizer(path, &ckpt.config, &ckpt.params, ckpt.tokenizer_digest)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
