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
}

pub fn run(args: &Args) -> Result<()> {
    if args.hf.is_none() && args.llmc.is_none() {
        bail!("nothing to write: give --hf DIR and/or --llmc FILE");
    }
    let ckpt = gpt2::model::load_model(&args.init)?;
    if let Some(dir) = &args.hf {
        for path in hf::save_dir(dir, &ckpt.config, &ckpt.params, args.dtype)? {
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(path) = &args.llmc {
        gpt2::model::checkpoint::save_llmc(path, &ckpt.config, &ckpt.params)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
