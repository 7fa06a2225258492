//! `serve`: a model behind OpenAI's completions API, with metrics, a web page and a training view
//! (the server itself is `src/serve/`).

use anyhow::{bail, Result};
use gpt2::serve::batcher::EngineOptions;
use gpt2::serve::{AppState, ServeOptions, Server};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The model: an llm.c model file, one of our checkpoints, or a Hugging Face GPT-2 (directory or
    /// .safetensors). Without it, only the training view.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// A training log (`train --log`) to show as curves on the web page, updating as it grows.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The most sequences generated together in one forward pass.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// The most requests waiting for a place in the batch; beyond it, 503.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// The most prompt tokens read in one forward pass (long prompts are read in chunks).
    #[arg(long, default_value_t = 256)]
    pub prefill_tokens: usize,
    /// Request bodies over this many bytes get 413.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// The most open connections; more are closed at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request head (or a body) before it is closed.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// The tokenizer the model was trained with (a directory from `tokenizer train`) [default: GPT-2's].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    if args.init.is_none() && args.log.is_none() {
        bail!("nothing to serve: give --init MODEL, --log LOG.jsonl, or both");
    }
    if args.timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    let tokenizer = gpt2::tokenizer::Tokenizer::gpt2_or_dir(args.tokenizer.as_deref())?;
    let model = match &args.init {
        Some(path) => {
            let ckpt = gpt2::model::load_model(path)?;
            ckpt.check_tokenizer(path, &tokenizer)?;
            let id = path.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
            eprintln!("model {id}: {} ({} parameters)", ckpt.config, ckpt.config.num_parameters_unpadded());
            Some((id, ckpt))
        }
        None => None,
    };
    let options = ServeOptions {
        engine: EngineOptions { max_batch: args.max_batch, queue: args.queue, prefill_tokens: args.prefill_tokens },
        max_body_bytes: args.max_body_bytes,
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.timeout),
        body_timeout: Duration::from_secs(args.timeout),
    };
    let state = AppState::new_with_tokenizer(model, args.log.clone(), options, tokenizer)?;
    let addr = format!("{}:{}", args.host, args.port);
    let server = Server::start(&addr, state)?;
    eprintln!(
        "serving on http://{} (POST /v1/completions, GET /v1/models, /metrics, /healthz; the web page at /)",
        server.addr
    );
    server.wait();
    Ok(())
}
