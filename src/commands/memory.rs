//! `memory`: how many bytes training a model at (B, T) takes, buffer group by buffer group
//! (`src/memory.rs`'s plan, which the GPU model allocates exactly), and the largest batch that fits
//! on common cards. The last line is JSON: `{"bytes": N}`.

use anyhow::{anyhow, bail, Result};
use gpt2::config::ModelConfig;
use gpt2::memory::{largest_gpu_batch, MemoryPlan, Precision, CARDS, GPU_MEMORY_RESERVE};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model size: a preset name (d6, d12 = GPT-2 124M, d24, d36, d48, ...).
    #[arg(long, default_value = "d12")]
    pub model: String,
    /// Sequences per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 1024)]
    pub seq: usize,
    /// Number format of the weight copy, the activations and their gradients (master weights, AdamW
    /// and statistics are fp32 in both). bf16 by default, as train's default on a GPU of compute
    /// capability 8.0 or newer, which every card of the table is.
    #[arg(long, default_value = "bf16", value_parser = super::choice::<Precision>())]
    pub precision: Precision,
}

pub fn run(args: &Args) -> Result<()> {
    let cfg = ModelConfig::from_name(&args.model).map_err(anyhow::Error::msg)?;
    if args.batch == 0 || args.seq == 0 {
        bail!("--batch and --seq must be at least 1 (got --batch {} --seq {})", args.batch, args.seq);
    }
    if args.seq > cfg.max_seq_len {
        bail!("--seq {} exceeds the model's maximum sequence length {}", args.seq, cfg.max_seq_len);
    }
    let plan = MemoryPlan::new(&cfg, args.batch, args.seq, args.precision).ok_or_else(|| {
        anyhow!("--batch {} --seq {}: the buffers would need more than 2^64 bytes", args.batch, args.seq)
    })?;
    println!(
        "training memory for {} ({} parameters), B={} T={}, {}",
        args.model,
        cfg.num_parameters(),
        args.batch,
        args.seq,
        args.precision.name()
    );
    print!("{}", plan.table());
    let fits: Vec<String> = CARDS
        .iter()
        .map(|&(card, bytes)| {
            let b = largest_gpu_batch(&cfg, args.seq, bytes, 1 << 16, args.precision);
            format!("{card}: {b}")
        })
        .collect();
    println!(
        "largest batch at T={} ({}, {} MiB kept free): {}",
        args.seq,
        args.precision.name(),
        GPU_MEMORY_RESERVE >> 20,
        fits.join(", ")
    );
    println!("{}", serde_json::json!({ "bytes": plan.total_bytes() }));
    Ok(())
}
