//! `eval`: a model's validation loss on token shards (batched exactly as `train` validates) and its
//! HellaSwag accuracy (`src/hellaswag.rs`, llm.c's completion-style scoring). The last line is JSON.

use crate::commands::train::{select_device, Device};
use crate::cpu::backend::CpuBackend;
use crate::cuda::{CudaBackend, Matmul};
use crate::data::{DataLoader, Position};
use crate::hellaswag;
use crate::train::Backend;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: an llm.c model file, one of our checkpoints, or a Hugging Face GPT-2 (directory or .safetensors).
    #[arg(long)]
    pub init: PathBuf,
    /// Validation token shards (llm.c format), a path or glob: report the mean loss over --val-batches.
    #[arg(long)]
    pub val_data: Option<String>,
    /// Sequences per validation batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per validation sequence [default: 64 on the CPU, min(1024, the model's context) on a GPU].
    #[arg(long)]
    pub seq: Option<usize>,
    /// Validation batches, read in order from the start of the shards (as `train` validates).
    #[arg(long, default_value_t = 10)]
    pub val_batches: usize,
    /// HellaSwag: rowanz's hellaswag_val.jsonl or llm.c's eval .bin (hellaswag_val.bin).
    #[arg(long)]
    pub hellaswag: Option<PathBuf>,
    /// Score only the first N HellaSwag examples (0 = all).
    #[arg(long, default_value_t = 0)]
    pub hellaswag_examples: usize,
    /// Rows (4 per example) in one HellaSwag forward pass [default: 16 on the CPU, 64 on a GPU].
    #[arg(long)]
    pub hellaswag_rows: Option<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// On the GPU, which kernels do the matrix multiplies.
    #[arg(long, value_enum, default_value = "handwritten")]
    pub matmul: Matmul,
    /// The tokenizer the model was trained with (a directory from `tokenizer train`) [default: GPT-2's];
    /// a model whose file records another is refused.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    if args.val_data.is_none() && args.hellaswag.is_none() {
        bail!("nothing to evaluate: give --val-data and/or --hellaswag");
    }
    let ckpt = crate::model::load_model(&args.init)?;
    let tokenizer = crate::tokenizer::Tokenizer::gpt2_or_dir(args.tokenizer.as_deref())?;
    ckpt.check_tokenizer(&args.init, &tokenizer)?;
    let config = ckpt.config;
    let device = select_device(args.device)?;
    let on_gpu = device == Device::Cuda;
    let seq = args.seq.unwrap_or(if on_gpu { config.max_seq_len.min(1024) } else { config.max_seq_len.min(64) });
    if args.batch == 0 || seq == 0 || seq > config.max_seq_len {
        bail!("--batch must be positive and --seq between 1 and the model's context {}", config.max_seq_len);
    }
    // HellaSwag first: read and check the file before the model is put anywhere
    let examples = match &args.hellaswag {
        Some(path) => {
            if config.vocab_size != crate::config::GPT2_VOCAB_SIZE || args.tokenizer.is_some() {
                bail!("HellaSwag is tokenized with GPT-2's vocabulary; this model has {} tokens", config.vocab_size);
            }
            let mut examples = hellaswag::read(path)?;
            if args.hellaswag_examples > 0 {
                examples.truncate(args.hellaswag_examples);
            }
            hellaswag::check_fits(&examples, config.max_seq_len, "the model's context")
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            examples
        }
        None => Vec::new(),
    };
    let rows = args.hellaswag_rows.unwrap_or(if on_gpu { 64 } else { 16 });
    if rows < hellaswag::ENDINGS {
        bail!("--hellaswag-rows must be at least {} (one example's endings)", hellaswag::ENDINGS);
    }
    let hs_t = examples.iter().map(|e| e.longest_row() - 1).max().unwrap_or(0);
    let mut backend: Box<dyn Backend> = if on_gpu {
        let (max_b, max_t) = if args.val_data.is_some() { (args.batch, seq) } else { (0, 0) };
        let (max_b, max_t) = if examples.is_empty() { (max_b, max_t) } else { (max_b.max(rows), max_t.max(hs_t)) };
        Box::new(CudaBackend::new(
            0,
            args.matmul,
            crate::precision::Precision::Fp32,
            config,
            &ckpt.params,
            max_b,
            max_t,
        )?)
    } else {
        if args.val_data.is_some() {
            crate::memory::check_cpu_memory(&config, args.batch, seq, crate::precision::Precision::Fp32)?;
        }
        Box::new(CpuBackend::new(config, ckpt.params))
    };
    eprintln!(
        "evaluating {} ({:.1}M parameters) on {}",
        config,
        config.num_parameters_unpadded() as f64 / 1e6,
        backend.describe()
    );

    let mut result = serde_json::Map::new();
    if let Some(pattern) = &args.val_data {
        let (b, t) = (args.batch, seq);
        let mut loader = DataLoader::new(pattern, b, t, config.vocab_size, false, 0)?;
        let batches = args.val_batches.min(loader.batches_per_epoch());
        if batches == 0 {
            bail!("--val-batches must be at least 1");
        }
        loader.seek(Position::default());
        let (mut inputs, mut targets) = (vec![0u32; b * t], vec![0u32; b * t]);
        let mut sum = 0.0;
        for _ in 0..batches {
            loader.next_batch(&mut inputs, &mut targets);
            sum += backend.loss(&inputs, &targets, b, t)?;
        }
        // the same mean as train's validation: the f32 sum of batch means over the batch count
        let loss = sum / batches as f32;
        eprintln!("val loss {loss:.4} over {batches} batches of B={b} T={t}");
        result.insert("val_loss".into(), serde_json::json!(loss.to_string().parse::<f64>().unwrap_or(f64::NAN)));
        result.insert("tokens".into(), serde_json::json!(batches * b * t));
    }
    if !examples.is_empty() {
        let start = Instant::now();
        let mut last = Instant::now();
        let n = examples.len();
        let (acc, _) = hellaswag::score(
            &examples,
            rows,
            |inputs, targets, b, t| backend.position_losses(inputs, targets, b, t),
            |done, acc| {
                if done == n || last.elapsed().as_secs_f64() > 2.0 {
                    last = Instant::now();
                    eprintln!(
                        "hellaswag {done}/{n} | acc {:.4} | acc_norm {:.4} | {:.1} examples/s",
                        acc.acc(),
                        acc.acc_norm(),
                        done as f64 / start.elapsed().as_secs_f64().max(1e-9)
                    );
                }
            },
        )?;
        result.insert("hellaswag_acc".into(), serde_json::json!(acc.acc()));
        result.insert("hellaswag_acc_norm".into(), serde_json::json!(acc.acc_norm()));
        result.insert("examples".into(), serde_json::json!(acc.examples));
    }
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}
