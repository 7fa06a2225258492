//! How much memory training needs, buffer by buffer, on the CPU and on a GPU, and the largest batch
//! that fits. One plan (`MemoryPlan`) says what every buffer of a training run holds and how many
//! bytes it takes; `gpt2 memory` prints it, the GPU model (`src/cuda/gpt2.rs`) allocates exactly its
//! buffers (`tests/cuda.rs` counts the bytes), and the batch searches below use its total.
//!
//! What there is, for a model of N parameters at (B, T), L layers, C channels, NH heads, Vp the
//! padded vocabulary:
//! - parameters, their gradients and AdamW's two moments: 4 buffers of N, in fp32; with bf16, also a
//!   bf16 copy of the weights that the layers read;
//! - the activations the forward keeps for the backward: per layer and token 16C numbers (ln1, qkv,
//!   atty, residual2, ln2, fch, fch_gelu, residual3) and a few statistics (layernorm mean and rstd,
//!   attention's log-sum-exp, NH per token); one block's attproj and fcproj, reused by every block;
//!   the logits (B, T, Vp), over which the backward writes their gradient;
//! - activation gradients for one block at a time (reused by every block) and the head's;
//! - scratch: attention's delta, the loss gradients, the token ids;
//! - the hand-written matmul's split-K partial results: 8C^2 fp32 numbers, for every B and T
//!   (`matmul_scratch_floats`).
//!
//! No (T, T) attention matrix and no probabilities: see `src/cpu/attention.rs` and
//! `src/cpu/softmax_crossentropy.rs`.
//!
//! Precision (bf16 here follows the definition of bf16 training in `src/precision.rs`): master
//! weights, gradients, AdamW's moments and every statistic (mean, rstd, log-sum-exps, losses) are
//! fp32; the weight copy, every stored activation and every activation gradient are bf16.

use crate::config::ModelConfig;
use crate::model::{
    checked_activation_sizes, checked_gradient_sizes, ActivationRole, GradientRole, ACTIVATION_NAMES, ACTIVATION_ROLES,
    ACTIVATION_STORED, GRADIENT_NAMES, GRADIENT_ROLES, GRADIENT_STORED,
};
use anyhow::{bail, Result};

pub use crate::precision::Precision;

/// The device buffer a tensor lives in: the GPU model allocates one buffer each (`CudaGpt2::new`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    Params,
    Grads,
    AdamM,
    AdamV,
    /// The bf16 copy of the weights (bf16 only).
    WeightsBf16,
    /// The activations (`ACTIVATION_NAMES`).
    Acts,
    /// One block's activation gradients and the head's, with attention's scratch (`GRADIENT_NAMES`).
    GradActs,
    Inputs,
    Targets,
    /// The split-K partial results of the matmul's weight gradient (`Gpu::reserve_matmul_scratch`).
    MatmulScratch,
}

/// One tensor of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The row of the table it is counted in.
    pub group: &'static str,
    pub name: &'static str,
    pub buffer: Buffer,
    pub elements: usize,
    /// Bytes per element.
    pub width: usize,
    /// Whether the precision chooses its format: true for what bf16 stores as bf16 (the weight copy,
    /// the activations, the activation gradients), false for what is fp32 in every precision (master
    /// weights, gradients, AdamW's moments, statistics, scratch) and for the token ids.
    pub narrowed: bool,
}

impl Entry {
    pub fn bytes(&self) -> usize {
        self.elements * self.width
    }
}

/// Every buffer training allocates at (B, T) and a precision, tensor by tensor.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    pub precision: Precision,
    pub entries: Vec<Entry>,
}

/// The table's groups, in order.
pub const GROUPS: [&str; 15] = [
    "parameters (fp32 master)",
    "parameter gradients (fp32)",
    "AdamW m (fp32)",
    "AdamW v (fp32)",
    "weight copy (bf16)",
    "activations: residual stream",
    "activations: layernorm outputs",
    "activations: qkv and attention output",
    "activations: MLP hidden, before and after GELU",
    "activations: projections (one block)",
    "activations: statistics (fp32)",
    "logits (dlogits written over them)",
    "activation gradients (one block + head)",
    "scratch (attention delta, dlosses, tokens)",
    "matmul split-K partials (fp32)",
];

/// fp32 numbers of scratch for the split-K partial results of the hand-written matmul's weight
/// gradients (`matmul_splitk_slices` in `src/cuda/kernels/matmul.rs` never uses more than there is):
/// 8C^2, two of the largest weight matrices of a block (fc's, 4C x C). Then GPT-2 small can cut
/// attproj's (C, C) gradient into up to 8 slices and qkv's (3C, C) into 2, the two whose outputs are
/// too few tiles to fill a GPU; 18 MiB for C = 768.
pub fn matmul_scratch_floats(config: &ModelConfig) -> Option<usize> {
    config.channels.checked_mul(config.channels)?.checked_mul(8)
}

/// The row of the table an activation is counted in, by its role in `model::Activations`.
fn activation_group(role: ActivationRole) -> &'static str {
    match role {
        ActivationRole::Residual => GROUPS[5],
        ActivationRole::Layernorm => GROUPS[6],
        ActivationRole::Attention => GROUPS[7],
        ActivationRole::Mlp => GROUPS[8],
        ActivationRole::Projection => GROUPS[9],
        ActivationRole::Statistic => GROUPS[10],
        ActivationRole::Logits => GROUPS[11],
    }
}

impl MemoryPlan {
    /// The plan for training `config` on batches of (B, T); `None` when a size does not fit a usize.
    pub fn new(config: &ModelConfig, b: usize, t: usize, precision: Precision) -> Option<MemoryPlan> {
        let n = config.num_parameters();
        let wide = precision.bytes();
        let mut entries = vec![
            Entry { group: GROUPS[0], name: "params", buffer: Buffer::Params, elements: n, width: 4, narrowed: false },
            Entry { group: GROUPS[1], name: "grads", buffer: Buffer::Grads, elements: n, width: 4, narrowed: false },
            Entry { group: GROUPS[2], name: "m", buffer: Buffer::AdamM, elements: n, width: 4, narrowed: false },
            Entry { group: GROUPS[3], name: "v", buffer: Buffer::AdamV, elements: n, width: 4, narrowed: false },
        ];
        if precision == Precision::Bf16 {
            entries.push(Entry {
                group: GROUPS[4],
                name: "weights",
                buffer: Buffer::WeightsBf16,
                elements: n,
                width: 2,
                narrowed: true,
            });
        }
        // every tensor of model/mod.rs's lists: a stored one in the precision's width, else fp32
        let sizes = checked_activation_sizes(config, b, t)?;
        for (i, (name, elements)) in ACTIVATION_NAMES.iter().zip(sizes).enumerate() {
            let (group, narrowed) = (activation_group(ACTIVATION_ROLES[i]), ACTIVATION_STORED[i]);
            let width = if narrowed { wide } else { 4 };
            entries.push(Entry { group, name, buffer: Buffer::Acts, elements, width, narrowed });
        }
        let sizes = checked_gradient_sizes(config, b, t)?;
        for (i, (name, elements)) in GRADIENT_NAMES.iter().zip(sizes).enumerate() {
            // attention's delta (a row statistic) and the losses' gradients are fp32 scratch
            let scratch = GRADIENT_ROLES[i] == GradientRole::Scratch;
            let (group, narrowed) = (if scratch { GROUPS[13] } else { GROUPS[12] }, GRADIENT_STORED[i]);
            let width = if narrowed { wide } else { 4 };
            entries.push(Entry { group, name, buffer: Buffer::GradActs, elements, width, narrowed });
        }
        let bt = b.checked_mul(t)?;
        entries.push(Entry {
            group: GROUPS[13],
            name: "inputs",
            buffer: Buffer::Inputs,
            elements: bt,
            width: 4,
            narrowed: false,
        });
        entries.push(Entry {
            group: GROUPS[13],
            name: "targets",
            buffer: Buffer::Targets,
            elements: bt,
            width: 4,
            narrowed: false,
        });
        entries.push(Entry {
            group: GROUPS[14],
            name: "matmul_partials",
            buffer: Buffer::MatmulScratch,
            elements: matmul_scratch_floats(config)?,
            width: 4,
            narrowed: false,
        });
        // every byte count, and their sum, must fit too
        entries.iter().try_fold(0usize, |acc, e| acc.checked_add(e.elements.checked_mul(e.width)?))?;
        Some(MemoryPlan { precision, entries })
    }

    /// All bytes the plan allocates.
    pub fn total_bytes(&self) -> usize {
        self.entries.iter().map(Entry::bytes).sum()
    }

    /// The bytes of one group of the table (0 for one the plan does not have, like the bf16 copy in fp32).
    pub fn group_bytes(&self, group: &str) -> usize {
        self.entries.iter().filter(|e| e.group == group).map(Entry::bytes).sum()
    }

    /// The number of elements of one device buffer: what `CudaGpt2::new` allocates for it.
    pub fn buffer_elements(&self, buffer: Buffer) -> usize {
        self.entries.iter().filter(|e| e.buffer == buffer).map(|e| e.elements).sum()
    }

    /// The elements of one device buffer that the precision narrows (`narrowed`: bf16 in bf16) or,
    /// with `narrowed` false, that stay fp32: the GPU model allocates a buffer that mixes the two
    /// (the activations with their statistics) as two, one of each type.
    pub fn buffer_elements_narrowed(&self, buffer: Buffer, narrowed: bool) -> usize {
        self.entries.iter().filter(|e| e.buffer == buffer && e.narrowed == narrowed).map(|e| e.elements).sum()
    }

    /// The table `gpt2 memory` prints: one line per group with its bytes and GiB, then the total.
    pub fn table(&self) -> String {
        let mut out = format!("{:<46} {:>16} {:>9}\n", "buffer group", "bytes", "GiB");
        for group in GROUPS {
            if self.entries.iter().any(|e| e.group == group) {
                let bytes = self.group_bytes(group);
                out += &format!("{group:<46} {:>16} {:>9.3}\n", thousands(bytes), gib(bytes));
            }
        }
        let total = self.total_bytes();
        out += &format!("{:<46} {:>16} {:>9.3}\n", "total", thousands(total), gib(total));
        out
    }
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// 1234567 -> "1,234,567".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes the CPU model needs for training at (B, T) in fp32: the fp32 plan (the CPU model and
/// `CpuBackend` hold the same buffers) less the GPU matmul's split-K scratch, which the CPU does not
/// have. `None` if it does not even fit a usize.
pub fn cpu_training_bytes(cfg: &ModelConfig, b: usize, t: usize) -> Option<usize> {
    cpu_training_bytes_in(cfg, b, t, Precision::Fp32)
}

/// Bytes the CPU model needs for training at (B, T) in `precision`. The CPU holds bf16 values in f32
/// slots (`src/precision.rs`), so bf16 saves nothing there: it needs the fp32 plan plus the bf16 copy
/// of the weights the layers read, 4 bytes a parameter more.
pub fn cpu_training_bytes_in(cfg: &ModelConfig, b: usize, t: usize, precision: Precision) -> Option<usize> {
    let plan = MemoryPlan::new(cfg, b, t, Precision::Fp32)?;
    let fp32 = plan.total_bytes() - 4 * plan.buffer_elements(Buffer::MatmulScratch);
    match precision {
        Precision::Fp32 => Some(fp32),
        Precision::Bf16 => fp32.checked_add(cfg.num_parameters().checked_mul(4)?),
    }
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
pub fn check_cpu_memory(cfg: &ModelConfig, b: usize, t: usize, precision: Precision) -> Result<()> {
    let Some(available) = available_memory_bytes() else { return Ok(()) };
    let fits = |b: usize| cpu_training_bytes_in(cfg, b, t, precision).is_some_and(|n| n <= available);
    if fits(b) {
        return Ok(());
    }
    let need = cpu_training_bytes_in(cfg, b, t, precision)
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

/// Bytes of device memory a model needs to train on (B, T) in `precision`: the plan's total (a batch
/// so large that the sizes overflow needs "more than any GPU has"). Kernels, cuBLAS and the context
/// need some more; see `GPU_MEMORY_RESERVE`.
pub fn gpu_training_bytes(config: &ModelConfig, b: usize, t: usize, precision: Precision) -> usize {
    MemoryPlan::new(config, b, t, precision).map_or(usize::MAX, |plan| plan.total_bytes())
}

/// Device memory kept free beyond `gpu_training_bytes`: the compiled kernels, cuBLAS's workspace, and room to spare.
pub const GPU_MEMORY_RESERVE: usize = 512 << 20;

/// The largest batch (at most `max_batch`) whose `gpu_training_bytes` at sequence length `t` fits in
/// `free` bytes with `GPU_MEMORY_RESERVE` to spare; 0 if not even one sequence fits.
pub fn largest_gpu_batch(config: &ModelConfig, t: usize, free: usize, max_batch: usize, precision: Precision) -> usize {
    largest_batch_that_fits(max_batch, |b| {
        gpu_training_bytes(config, b, t, precision).saturating_add(GPU_MEMORY_RESERVE) <= free
    })
}

/// Cards `gpt2 memory` sizes the batch for: the name and the memory the driver reports (MiB, as
/// `nvidia-smi` shows it: an RTX 4090, an A100 40GB, an H100 80GB, an H200).
pub const CARDS: [(&str, usize); 4] =
    [("24 GB", 24_564 << 20), ("40 GB", 40_960 << 20), ("80 GB", 81_559 << 20), ("141 GB", 143_771 << 20)];

#[cfg(test)]
mod tests {
    use super::*;

    fn d12() -> ModelConfig {
        ModelConfig::from_name("d12").unwrap()
    }

    #[test]
    fn the_plan_counts_four_parameter_buffers_and_the_activations_once() {
        let cfg = d12();
        let n = cfg.num_parameters();
        // at B = 0 only the parameter buffers and the matmul's split-K scratch (8C^2 floats) are left
        let splitk = 8 * 768 * 768 * 4;
        let plan = MemoryPlan::new(&cfg, 0, 1024, Precision::Fp32).unwrap();
        assert_eq!(plan.total_bytes(), 16 * n + splitk);
        let bf16 = MemoryPlan::new(&cfg, 0, 1024, Precision::Bf16).unwrap();
        assert_eq!(bf16.total_bytes(), 18 * n + splitk, "fp32 master, grads, m, v and a bf16 copy");
        assert!(plan.table().contains("matmul split-K partials"));
        // per sequence of 1024 tokens: per layer and token 16C stored values and 4 + NH fp32 statistics
        let (l, c, nh, vp) = (12, 768, 12, 50304);
        let tokens = 1024;
        let per_seq = |p: Precision| {
            MemoryPlan::new(&cfg, 2, 1024, p).unwrap().total_bytes()
                - MemoryPlan::new(&cfg, 1, 1024, p).unwrap().total_bytes()
        };
        // bf16; outside the blocks: encoded, lnf, one block's attproj and fcproj, lnf's statistics,
        // the logits, their log-sum-exp and the loss
        let w = 2;
        let acts = tokens * (l * (16 * c * w + (4 + nh) * 4) + 4 * c * w + 2 * 4 + vp * w + 2 * 4);
        let grads = tokens * (17 * c * w + 2 * c * w) + tokens * (nh * 4 + 4);
        let tokens_ids = tokens * 8;
        assert_eq!(per_seq(Precision::Bf16), acts + grads + tokens_ids);
        // with the (T, T) attention maps gone, a 1024-token sequence needs about 0.47 GB in bf16 and 0.9 in fp32
        assert!((0.4e9..0.5e9).contains(&(per_seq(Precision::Bf16) as f64)), "{}", per_seq(Precision::Bf16));
        assert!((0.8e9..1.0e9).contains(&(per_seq(Precision::Fp32) as f64)), "{}", per_seq(Precision::Fp32));
    }

    #[test]
    fn gpt2_small_at_b64_fits_the_targets() {
        // the targets: bf16 at B=64, T=1024 in 32 GiB; fp32 on an 80 GB card
        let cfg = d12();
        assert!(gpu_training_bytes(&cfg, 64, 1024, Precision::Bf16) <= 32 << 30);
        assert!(gpu_training_bytes(&cfg, 64, 1024, Precision::Fp32) + GPU_MEMORY_RESERVE <= CARDS[2].1);
    }

    #[test]
    fn groups_add_up_to_the_total_and_buffers_to_the_entries() {
        let plan = MemoryPlan::new(&d12(), 4, 256, Precision::Bf16).unwrap();
        let by_group: usize = GROUPS.iter().map(|g| plan.group_bytes(g)).sum();
        assert_eq!(by_group, plan.total_bytes());
        assert!(plan.entries.iter().all(|e| GROUPS.contains(&e.group)));
        let table = plan.table();
        assert!(table.contains("weight copy (bf16)") && table.lines().last().unwrap().starts_with("total"));
        let fp32 = MemoryPlan::new(&d12(), 4, 256, Precision::Fp32).unwrap();
        assert!(!fp32.table().contains("weight copy"));
        assert_eq!(fp32.buffer_elements(Buffer::Params), d12().num_parameters());
    }

    #[test]
    fn largest_batch_is_the_last_that_fits() {
        let cfg = d12();
        let free = 80usize << 30;
        let p = Precision::Fp32;
        let b = largest_gpu_batch(&cfg, 1024, free, 1024, p);
        assert!(b > 0 && gpu_training_bytes(&cfg, b, 1024, p) + GPU_MEMORY_RESERVE <= free);
        assert!(gpu_training_bytes(&cfg, b + 1, 1024, p) + GPU_MEMORY_RESERVE > free);
        assert_eq!(largest_gpu_batch(&cfg, 1024, 1 << 30, 64, p), 0);
        assert_eq!(largest_gpu_batch(&ModelConfig::from_name("tiny").unwrap(), 64, free, 8, p), 8);
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
