//! How much memory training needs, on the CPU and on a GPU, and the largest batch that fits. One
//! formula for the activations (`model::checked_activation_sizes`) feeds both estimates.

use crate::config::ModelConfig;
use crate::model::{checked_activation_sizes, ParamLayout};
use anyhow::{bail, Result};

/// Bytes the CPU model needs for training at (B, T): parameters, gradients and AdamW's two moments,
/// plus the activations and their gradients. `None` if it does not even fit a usize.
pub fn cpu_training_bytes(cfg: &ModelConfig, b: usize, t: usize) -> Option<usize> {
    let acts = checked_activation_sizes(cfg, b, t)?.iter().sum::<usize>();
    // 4 floats per parameter (params, grads, m, v), 2 per activation (value and gradient), 4 bytes each
    cfg.num_parameters().checked_mul(16)?.checked_add(acts.checked_mul(8)?)
}

/// The memory this machine has available, from /proc/meminfo (Linux); `None` elsewhere.
pub fn available_memory_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The largest batch in 1..=max_batch for which `fits` holds, or 0 if none does. Memory grows with
/// the batch, so `fits` is true up to some batch and false above it: a binary search finds the edge
/// (a linear one would take forever for an absurd --batch).
pub fn largest_batch_that_fits(max_batch: usize, fits: impl Fn(usize) -> bool) -> usize {
    if max_batch == 0 || !fits(1) {
        return 0;
    }
    if fits(max_batch) {
        return max_batch;
    }
    let (mut lo, mut hi) = (1, max_batch); // fits(lo), !fits(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Refuses, with the largest batch that fits, a CPU run that would not fit in memory.
pub fn check_cpu_memory(cfg: &ModelConfig, b: usize, t: usize) -> Result<()> {
    let Some(available) = available_memory_bytes() else { return Ok(()) };
    let fits = |b: usize| cpu_training_bytes(cfg, b, t).is_some_and(|n| n <= available);
    if fits(b) {
        return Ok(());
    }
    let need = cpu_training_bytes(cfg, b, t)
        .map_or("more than 2^64 bytes".into(), |n| format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64));
    let largest = Some(largest_batch_that_fits(b - 1, fits)).filter(|&b| b > 0);
    bail!(
        "training {cfg} with --batch {b} --seq {t} needs {need} but {:.1} GiB are available; {}",
        available as f64 / (1u64 << 30) as f64,
        largest.map_or("even --batch 1 does not fit: try a smaller --seq or model".into(), |b| format!(
            "the largest batch that fits is --batch {b}"
        ))
    );
}

/// Bytes of device memory a model needs to train on (B, T): parameters, gradients and AdamW's two
/// moments (4 buffers of the parameter count), activations and their gradients (2 buffers of the
/// activation count), and the token buffers. Kernels, cuBLAS and the context need some more; see
/// `GPU_MEMORY_RESERVE`.
pub fn gpu_training_bytes(config: &ModelConfig, b: usize, t: usize) -> usize {
    let params = ParamLayout::new(config).total;
    // a batch so large that the sizes overflow needs "more than any GPU has"
    let Some(sizes) = checked_activation_sizes(config, b, t) else { return usize::MAX };
    let acts: usize = sizes.iter().sum();
    let floats =
        (4 * params).saturating_add(acts.saturating_mul(2)).saturating_add(b.saturating_mul(t).saturating_mul(2));
    floats.saturating_mul(std::mem::size_of::<f32>())
}

/// Device memory kept free beyond `gpu_training_bytes`: the compiled kernels, cuBLAS's workspace, and room to spare.
pub const GPU_MEMORY_RESERVE: usize = 512 << 20;

/// The largest batch (at most `max_batch`) whose `gpu_training_bytes` at sequence length `t` fits in
/// `free` bytes with `GPU_MEMORY_RESERVE` to spare; 0 if not even one sequence fits.
pub fn largest_gpu_batch(config: &ModelConfig, t: usize, free: usize, max_batch: usize) -> usize {
    largest_batch_that_fits(max_batch, |b| gpu_training_bytes(config, b, t).saturating_add(GPU_MEMORY_RESERVE) <= free)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::activation_sizes;

    #[test]
    fn gpu_training_bytes_counts_four_parameter_buffers_and_two_activation_buffers() {
        let cfg = ModelConfig::from_name("d12").unwrap();
        let per_batch = gpu_training_bytes(&cfg, 2, 1024) - gpu_training_bytes(&cfg, 1, 1024);
        let acts: usize = activation_sizes(&cfg, 1, 1024).iter().sum();
        assert_eq!(per_batch, (2 * acts + 2 * 1024) * 4);
        assert_eq!(gpu_training_bytes(&cfg, 0, 1024), 4 * ParamLayout::new(&cfg).total * 4);
        // GPT-2 small at T=1024 needs about 4.7 GB per sequence (the (T, T) attention maps are most of it)
        assert!((4.5e9..4.9e9).contains(&(per_batch as f64)), "{per_batch}");
    }

    #[test]
    fn largest_batch_is_the_last_that_fits() {
        let cfg = ModelConfig::from_name("d12").unwrap();
        let free = 80usize << 30;
        let b = largest_gpu_batch(&cfg, 1024, free, 64);
        assert!(b > 0 && gpu_training_bytes(&cfg, b, 1024) + GPU_MEMORY_RESERVE <= free);
        assert!(gpu_training_bytes(&cfg, b + 1, 1024) + GPU_MEMORY_RESERVE > free);
        assert_eq!(largest_gpu_batch(&cfg, 1024, 1 << 30, 64), 0);
        assert_eq!(largest_gpu_batch(&ModelConfig::from_name("tiny").unwrap(), 64, free, 8), 8);
    }
}
