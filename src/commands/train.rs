//! `train`: parse the flags (their names are a contract other tools rely on), pick the device,
//! build or load the model, and hand over to the training loop in `src/train.rs`.

use crate::commands::sample::print_sample;
use anyhow::{bail, Result};
use gpt2::config::ModelConfig;
use gpt2::config::GPT2_VOCAB_SIZE;
use gpt2::cpu::gpt2::CpuKernels;
use gpt2::cuda::Matmul;
use gpt2::device::{choose_precision, cpu_kernels, make_backend, select_device, Compute, Device};
use gpt2::model::checkpoint::{self, TrainState};
use gpt2::model::init::gpt2_init;
use gpt2::optim::{AdamWConfig, Schedule};
use gpt2::precision::Precision;
use gpt2::rng::Rng;
use gpt2::tokenizer::Tokenizer;
use gpt2::train::{train_with_eval, Backend, EvalHook, SampleHook, TrainConfig, TrainSummary, ValText};
use std::path::PathBuf;

/// Arguments of `train`. Defaults not given here depend on the device (see `resolve`).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Where to train.
    #[arg(long, default_value = "auto", value_parser = super::choice::<Device>())]
    pub device: Device,
    /// On the GPU, which kernels do the matrix multiplies: ours (kernels/matmul.cu) or cuBLAS (SGEMM
    /// in fp32; in bf16 cuBLASLt, with the bias, GELU and bias gradient fused).
    #[arg(long, default_value = "handwritten", value_parser = super::choice::<Matmul>())]
    pub matmul: Matmul,
    /// On the CPU, which layers run: the fast ones (src/cpu/fast/), or the readable reference
    /// (src/cpu/*.rs, about 14x slower) so that a debugger steps into the code you read
    /// [default: fast]. CPU only: on the GPU it is an error (there --matmul picks the matmul kernels).
    #[arg(long, value_parser = super::choice::<CpuKernels>())]
    pub kernels: Option<CpuKernels>,
    /// Numerics: fp32, or bf16 mixed precision (bf16 weight copy, activations and their gradients;
    /// fp32 master weights, gradients, AdamW state and statistics: see src/precision.rs), on the CPU
    /// and the GPU. Checkpoints keep the fp32 master weights either way
    /// [default: bf16 on a GPU of compute capability 8.0 or newer, fp32 on older GPUs and the CPU].
    #[arg(long, value_parser = super::choice::<Precision>())]
    pub precision: Option<Precision>,
    /// Model size for a fresh start: tiny, d6, d12 (GPT-2 124M), d24, d36, d48 or L<l>H<h>C<c>
    /// [default: tiny on the CPU, d12 on a GPU].
    #[arg(long, conflicts_with_all = ["init", "resume"])]
    pub model: Option<String>,
    /// Start from these weights: an llm.c model file, one of our checkpoints (optimizer state is not used),
    /// or a Hugging Face GPT-2 (a directory with config.json + model.safetensors, or a .safetensors file).
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Training token shards (llm.c format), a path or glob [default: the shipped Shakespeare text].
    #[arg(long)]
    pub train_data: Option<String>,
    /// Validation token shards, a path or glob [default: with the shipped text, its val shard].
    #[arg(long)]
    pub val_data: Option<String>,
    /// The tokenizer of the data (a directory from `tokenizer train`) [default: GPT-2's]: a fresh model's
    /// vocabulary is its size (padded to a multiple of 128), the shipped text is encoded with it, and
    /// saved files record it; a model to --init or --resume must have been trained with it.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Sequences per micro-batch [default: 8 on the CPU; on a GPU the largest batch up to 64 that fits].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Tokens per sequence [default: 64 on the CPU, 1024 on a GPU].
    #[arg(long)]
    pub seq: Option<usize>,
    /// Tokens per optimizer step; a multiple of batch*seq, the rest is gradient accumulation [default: batch*seq].
    #[arg(long)]
    pub total_batch: Option<usize>,
    /// Optimizer steps (the default fits the first run on the shipped text in about 5 minutes on 2 cores).
    #[arg(long, default_value_t = 850)]
    pub steps: usize,
    /// Peak learning rate [default: 1e-3 for models of 128 channels or fewer (tiny; measured best of
    /// 5e-4..6e-3 on the shipped text), else 6e-4 (GPT-2 small's)].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Warmup steps (linear from lr/warmup to lr).
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// The learning rate after warmup: cosine decay to --min-lr-frac x --lr at the last step, or constant.
    #[arg(long, default_value = "cosine", value_parser = super::choice::<Schedule>())]
    pub schedule: Schedule,
    /// The learning rate at the end of the cosine, as a fraction of --lr.
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_frac: f32,
    /// AdamW's decay rate of the gradient's running mean m (its momentum).
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f32,
    /// AdamW's decay rate of the squared gradient's running mean v.
    #[arg(long, default_value_t = 0.95)]
    pub beta2: f32,
    /// AdamW's epsilon, added to sqrt(v) in the update's denominator.
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f32,
    /// AdamW's decoupled weight decay (on 2-D weights only, unless --decay-all).
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f32,
    /// Decay every parameter, biases and LayerNorms too, as llm.c's CPU trainer does.
    #[arg(long)]
    pub decay_all: bool,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f32,
    /// Measure validation loss every N steps (0 = never).
    #[arg(long, default_value_t = 100)]
    pub val_every: usize,
    /// Validation batches, read in order from the start of the val data.
    #[arg(long, default_value_t = 10)]
    pub val_batches: usize,
    /// Visit the training batches in a seeded random order (the default: on the shipped plays it
    /// learns faster than file order, which shows the model one play after another).
    #[arg(long, overrides_with = "no_shuffle")]
    pub shuffle: bool,
    /// Visit the training batches in file order.
    #[arg(long, overrides_with = "shuffle")]
    pub no_shuffle: bool,
    /// Seed of the weight init, the shuffle order and sampling [default: 1337, or the checkpoint's].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Append one JSON object per step to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Write a checkpoint (weights, optimizer state, data position) here at the end, on Ctrl-C and every
    /// --save-every steps [default: the --resume checkpoint, else checkpoints/latest.bin].
    #[arg(long, conflicts_with = "no_save")]
    pub save: Option<PathBuf>,
    /// Do not write a checkpoint.
    #[arg(long)]
    pub no_save: bool,
    /// Let this run replace a checkpoint already at the --save path. Without it, a run that does not
    /// --resume that very file refuses to start rather than write over another run's checkpoint.
    #[arg(long, conflicts_with = "no_save")]
    pub overwrite: bool,
    /// Save every N steps (0 = only at the end).
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Also write the weights as an llm.c model file (version 3, fp32) whenever saving.
    #[arg(long)]
    pub export_llmc: Option<PathBuf>,
    /// Resume from one of our checkpoints: weights, optimizer state, step and data position.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Keep a console line every N steps (0: about 20 lines a run, plus one at each validation); on a
    /// terminal the line in between updates in place. --log keeps every step.
    #[arg(long, default_value_t = 0)]
    pub print_every: usize,
    /// Print a short sample every N steps (0 = never).
    #[arg(long, default_value_t = 250)]
    pub sample_every: usize,
    /// Score HellaSwag during training (hellaswag_val.jsonl or llm.c's hellaswag_val.bin), every --eval-every
    /// steps; the scores go to the console and the log as hellaswag_acc and hellaswag_acc_norm.
    #[arg(long)]
    pub hellaswag: Option<PathBuf>,
    /// Score HellaSwag every N steps [default: --val-every].
    #[arg(long, requires = "hellaswag")]
    pub eval_every: Option<usize>,
    /// Score only the first N HellaSwag examples during training (0 = all).
    #[arg(long, default_value_t = 0, requires = "hellaswag")]
    pub hellaswag_examples: usize,
    /// A named set of hyperparameters. gpt2-124m: llm.c's GPT-2 small on FineWeb (d12, T=1024, 524,288
    /// tokens a step, lr 6e-4, 700 warmup steps, cosine to 0 over 19,073 steps = 10B tokens, weight decay 0.1,
    /// grad clip 1.0, validation and HellaSwag every 250 steps, a checkpoint every 1000 (or --save-every)).
    /// The flags it sets cannot be given with it; --batch (the micro-batch), the data, --hellaswag and
    /// --save-every can.
    #[arg(long, value_enum, conflicts_with_all = [
        "model", "seq", "total_batch", "steps", "lr", "warmup", "schedule", "min_lr_frac", "beta1", "beta2", "eps",
        "weight_decay", "decay_all", "grad_clip", "val_every", "val_batches", "eval_every",
    ])]
    pub recipe: Option<Recipe>,
}

/// `--recipe`: named hyperparameter sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Recipe {
    /// llm.c's GPT-2 small (124M) reproduction on FineWeb 10B.
    #[value(name = "gpt2-124m")]
    Gpt2_124m,
}

/// The `Args` a recipe means: the user's, with the recipe's hyperparameters filled in.
fn apply_recipe(args: &Args) -> Args {
    let mut a = args.clone();
    match args.recipe {
        None => {}
        Some(Recipe::Gpt2_124m) => {
            if a.init.is_none() && a.resume.is_none() {
                a.model = Some("d12".into());
            }
            a.seq = Some(1024);
            a.total_batch = Some(524_288);
            a.steps = 19_073; // 10B tokens / 524,288 a step
            a.lr = Some(6e-4);
            a.warmup = 700;
            a.schedule = Schedule::Cosine;
            a.min_lr_frac = 0.0;
            a.beta1 = 0.9;
            a.beta2 = 0.95;
            a.eps = 1e-8;
            a.weight_decay = 0.1;
            a.decay_all = false;
            a.grad_clip = 1.0;
            a.val_every = 250;
            a.val_batches = 20; // llm.c's val_max_steps: 20 x 64 x 1024 = 1.3M tokens
            a.eval_every = Some(250);
            if a.save_every == 0 && !a.no_save {
                a.save_every = 1000;
            }
        }
    }
    a
}

pub fn run(args: &Args) -> Result<()> {
    let args = &apply_recipe(args);
    check_recipe_data(args)?;
    let device = select_device(args.device)?;
    let tokenizer = Tokenizer::gpt2_or_dir(args.tokenizer.as_deref())?;
    let (config, params, resume) = load_or_init(args, device, &tokenizer)?;
    let kernels = cpu_kernels(args.kernels, device)?;
    let (precision, precision_note) = choose_precision(args.precision, device)?;
    let custom_tokenizer = args.tokenizer.as_ref().map(|_| &tokenizer);
    let mut cfg = resolve(args, resume.as_ref().map(|r| &r.2), device, &config, precision, custom_tokenizer)?;
    cfg.tokenizer_digest = if args.tokenizer.is_some() { tokenizer.digest() } else { 0 };
    let compute = Compute { device, matmul: args.matmul, kernels, precision, precision_note };
    let mut backend = make_backend(&compute, config, params, cfg.batch, cfg.seq)?;
    let state: Option<TrainState> = match resume {
        Some((m, v, state)) => {
            backend.set_optimizer_state(&m, &v)?;
            eprintln!(
                "resuming {} at step {}",
                args.resume.as_ref().map_or(String::new(), |p| p.display().to_string()),
                state.step
            );
            Some(state)
        }
        None => None,
    };
    // Ctrl-C: finish the current step and save (a second Ctrl-C exits at once)
    let _ = ctrlc::set_handler(|| {
        if gpt2::train::STOP_REQUESTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: stopping after this step (press again to quit now)");
    });
    // every --sample-every steps: 64 tokens of a new document, to watch the model learn to write
    let can_sample = config.vocab_size == tokenizer.vocab_size();
    let eot = tokenizer.eot_token();
    let mut sample_hook = |backend: &mut dyn Backend, step: usize, rng: &mut Rng| -> Result<()> {
        println!("---- sample after step {step} ----");
        backend.with_state(&mut |params, _, _| {
            print_sample(kernels, &config, params, &tokenizer, &[eot], 64, 1.0, 40, rng)
        })?;
        println!("\n----------------");
        Ok(())
    };
    let hook: Option<&mut SampleHook> = if can_sample { Some(&mut sample_hook) } else { None };
    let mut hellaswag = match &args.hellaswag {
        Some(path) => Some(hellaswag_hook(path, args, &config, &cfg, device)?),
        None => None,
    };
    if args.recipe.is_some() {
        print_plan(&config, &cfg, precision, backend.describe());
    }
    let summary = train_with_eval(backend.as_mut(), &cfg, state, hook, hellaswag.as_mut())?;
    let tokenizer_flag = args.tokenizer.as_ref().map_or(String::new(), |d| format!(" --tokenizer {}", d.display()));
    print_val_per_byte(&summary, &cfg, &tokenizer);
    print_summary(&summary, &cfg, can_sample, &tokenizer_flag);
    if summary.interrupted {
        // stopped by Ctrl-C: saved, but not finished, which a script running `train && ...` must see
        std::process::exit(130);
    }
    Ok(())
}

/// The model to train: a checkpoint to resume (with its AdamW moments and training state), weights
/// to start from (`--init`), or a fresh init of `--model` (by default `tiny` on the CPU, d12 on a GPU).
#[allow(clippy::type_complexity)]
fn load_or_init(
    args: &Args,
    device: Device,
    tokenizer: &Tokenizer,
) -> Result<(ModelConfig, Vec<f32>, Option<(Vec<f32>, Vec<f32>, TrainState)>)> {
    if let Some(path) = &args.resume {
        let ckpt = checkpoint::load(path)?;
        ckpt.check_tokenizer(path, tokenizer)?;
        let Some((m, v, state)) = ckpt.optimizer else {
            bail!("{}: is an llm.c model file without optimizer state; use --init to start from it", path.display());
        };
        Ok((ckpt.config, ckpt.params, Some((m, v, state))))
    } else if let Some(path) = &args.init {
        let ckpt = gpt2::model::load_model(path)?;
        ckpt.check_tokenizer(path, tokenizer)?;
        Ok((ckpt.config, ckpt.params, None))
    } else {
        let default_model = if device == Device::Cuda { "d12" } else { "tiny" };
        let mut config =
            ModelConfig::from_name(args.model.as_deref().unwrap_or(default_model)).map_err(anyhow::Error::msg)?;
        // the vocabulary follows the tokenizer, padded to a multiple of 128 (GPT-2's 50257 -> 50304)
        config.vocab_size = tokenizer.vocab_size();
        config.padded_vocab_size = tokenizer.vocab_size().div_ceil(128) * 128;
        Ok((config, gpt2_init(&config, args.seed.unwrap_or(DEFAULT_SEED)), None))
    }
}

/// The last validation as a loss per byte of the validation text (`gpt2::train::per_byte`), which
/// compares runs with different tokenizers: the bytes are the validation tokens decoded with `tokenizer`.
fn print_val_per_byte(summary: &TrainSummary, cfg: &TrainConfig, tokenizer: &Tokenizer) {
    let (Some(&(step, loss)), Some(pattern)) = (summary.val_losses.last(), &cfg.val_data) else { return };
    match ValText::measure(pattern, cfg.batch, cfg.seq, cfg.val_batches, tokenizer) {
        Ok(text) => eprintln!("step {step}: {}", text.describe(loss)),
        Err(e) => eprintln!("no val loss per byte: {e:#}"),
    }
}

/// The last lines of a run: speed, what was saved (or that nothing was, and why), and what to run next.
/// `can_sample`: the model's vocabulary is its tokenizer's; `tokenizer_flag`: the `--tokenizer DIR`
/// the next commands need ("" for GPT-2's).
fn print_summary(summary: &TrainSummary, cfg: &TrainConfig, can_sample: bool, tokenizer_flag: &str) {
    let ran = summary.train_losses.len();
    if ran == 0 {
        eprintln!(
            "done: no steps to run (--steps {}{}), so nothing was trained and no checkpoint was written",
            cfg.steps,
            if summary.steps_done > 0 {
                format!("; the checkpoint is already at step {}", summary.steps_done)
            } else {
                String::new()
            }
        );
        return;
    }
    let saved = match &summary.saved {
        Some(path) => format!(", saved to {}", path.display()),
        None => ", not saved (--no-save)".to_string(),
    };
    eprintln!(
        "{}: {ran} steps, {:.1} ms/step, {:.0} tok/s{saved}",
        if summary.interrupted { "stopped" } else { "done" },
        summary.mean_ms_per_step,
        summary.tokens_per_second,
    );
    let Some(path) = &summary.saved else { return };
    if summary.steps_done < cfg.steps {
        eprintln!(
            "continue it (step {} of {}): cargo run --release -- train --resume {}{tokenizer_flag} (with the same data flags)",
            summary.steps_done,
            cfg.steps,
            path.display()
        );
    }
    if can_sample {
        eprintln!("generate text with it: cargo run --release -- sample --init {}{tokenizer_flag}", path.display());
    }
}

/// `--recipe gpt2-124m` plans 10B tokens of FineWeb: without `--train-data` it would train d12 on the
/// 1.5M-token Shakespeare text, which is not the recipe. Says how to get the data instead.
fn check_recipe_data(args: &Args) -> Result<()> {
    if args.recipe.is_some() && args.train_data.is_none() {
        bail!(
            "--recipe gpt2-124m trains on FineWeb (10B tokens); give its token shards with --train-data and \
             --val-data. To make them (README, \"Reproducing GPT-2 small (124M)\"):\n  \
             huggingface-cli download HuggingFaceFW/fineweb --repo-type dataset --include \"sample/10BT/*\" --local-dir fineweb\n  \
             cargo run --release -- prepare -i fineweb/sample/10BT/*.parquet -o data/fineweb10B --val-tokens 100000000\n  \
             cargo run --release -- train --recipe gpt2-124m --train-data 'data/fineweb10B/train_*.bin' --val-data data/fineweb10B/val_000000.bin"
        );
    }
    Ok(())
}

/// HellaSwag every --eval-every steps (`src/hellaswag.rs`), batched in the training micro-batch's rows.
/// The file is read and checked now, so a bad file fails before training starts.
fn hellaswag_hook<'a>(
    path: &std::path::Path,
    args: &Args,
    config: &ModelConfig,
    cfg: &TrainConfig,
    device: Device,
) -> Result<EvalHook<'a>> {
    if config.vocab_size != GPT2_VOCAB_SIZE || args.tokenizer.is_some() {
        bail!("--hellaswag needs GPT-2's vocabulary; this model has {} tokens", config.vocab_size);
    }
    let mut examples = gpt2::hellaswag::read(path)?;
    if args.hellaswag_examples > 0 {
        examples.truncate(args.hellaswag_examples);
    }
    // the GPU's buffers hold (batch, seq); the CPU's grow to whatever a forward pass needs
    let (rows, max_t) = if device == Device::Cuda {
        if cfg.batch < gpt2::hellaswag::ENDINGS {
            bail!("--hellaswag on the GPU scores in batches of --batch rows: it must be at least 4");
        }
        (cfg.batch, cfg.seq)
    } else {
        (cfg.batch.max(gpt2::hellaswag::ENDINGS), config.max_seq_len)
    };
    let what = if device == Device::Cuda { "--seq" } else { "the model's context" };
    gpt2::hellaswag::check_fits(&examples, max_t, what).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    eprintln!("HellaSwag: {} examples from {}", examples.len(), path.display());
    let every = args.eval_every.unwrap_or(args.val_every);
    Ok(EvalHook {
        every,
        run: Box::new(move |backend: &mut dyn Backend| {
            let (acc, _) = gpt2::hellaswag::score(
                &examples,
                rows,
                |inputs, targets, b, t| backend.position_losses(inputs, targets, b, t),
                |_, _| {},
            )?;
            Ok(vec![("hellaswag_acc", acc.acc()), ("hellaswag_acc_norm", acc.acc_norm())])
        }),
    })
}

/// The plan of a `--recipe` run: tokens, steps, memory (`MemoryPlan`'s, as `gpt2 memory` prints it);
/// the time follows from the first steps.
fn print_plan(config: &ModelConfig, cfg: &TrainConfig, precision: Precision, device: String) {
    let tokens = cfg.steps as f64 * cfg.total_batch as f64;
    let accum = cfg.total_batch / (cfg.batch * cfg.seq).max(1);
    let flops = config.flops_per_token(cfg.seq) * tokens;
    eprintln!("plan ({config}, on {device}):");
    eprintln!(
        "  {} steps x {} tokens = {:.2}B tokens (micro-batch B={} T={}, {} accumulation steps)",
        cfg.steps,
        cfg.total_batch,
        tokens / 1e9,
        cfg.batch,
        cfg.seq,
        accum
    );
    let schedule = match cfg.schedule {
        Schedule::Cosine => format!("cosine decay to {} x lr", cfg.min_lr_frac),
        Schedule::Constant => "constant".to_string(),
    };
    eprintln!(
        "  lr {:.0e}, {} warmup steps, then {schedule}; weight decay {}; grad clip {}; validation every {} steps",
        cfg.lr, cfg.warmup, cfg.adamw.weight_decay, cfg.grad_clip, cfg.val_every
    );
    match gpt2::memory::MemoryPlan::new(config, cfg.batch, cfg.seq, precision) {
        Some(plan) => {
            let gib = |bytes: usize| bytes as f64 / (1u64 << 30) as f64;
            let state: usize = gpt2::memory::GROUPS[..5].iter().map(|g| plan.group_bytes(g)).sum();
            eprintln!(
                "  memory ({precision}): {:.2} GiB in all: {:.2} GiB for parameters, gradients, AdamW state and weight \
                 copies + {:.2} GiB for activations, their gradients and scratch (`gpt2 memory` itemizes it)",
                gib(plan.total_bytes()),
                gib(state),
                gib(plan.total_bytes() - state)
            );
        }
        None => eprintln!("  memory: more than any machine has (the sizes overflow)"),
    }
    eprintln!(
        "  compute: {:.2e} FLOPs (6N + 6LTC per token); the time left is projected on every step line from the measured steps",
        flops
    );
    if let Some(path) = &cfg.save {
        eprintln!(
            "  checkpoints: {} every {} steps; resume with --resume {}",
            path.display(),
            cfg.save_every,
            path.display()
        );
    }
}

const DEFAULT_SEED: u64 = 1337;
/// Where `train` saves its checkpoint unless told otherwise, so a finished run is never lost.
const DEFAULT_SAVE: &str = "checkpoints/latest.bin";

/// Rejects hyperparameters that cannot train (before any work is done).
fn check_hyperparameters(args: &Args, lr: f32) -> Result<()> {
    let checks = [
        (lr.is_finite() && lr > 0.0, "--lr must be a positive number"),
        ((0.0..1.0).contains(&args.beta1), "--beta1 must be in [0, 1)"),
        ((0.0..1.0).contains(&args.beta2), "--beta2 must be in [0, 1)"),
        (args.eps.is_finite() && args.eps >= 0.0, "--eps must be 0 or more"),
        (args.weight_decay.is_finite() && args.weight_decay >= 0.0, "--weight-decay must be 0 or more"),
        ((0.0..=1.0).contains(&args.min_lr_frac), "--min-lr-frac must be in [0, 1]"),
        (args.grad_clip.is_finite() && args.grad_clip >= 0.0, "--grad-clip must be 0 (off) or more"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, message)) => bail!("{message}"),
        None => Ok(()),
    }
}

/// A new run must not destroy a previous run's checkpoint without being asked: `path` may already
/// exist only when this run resumes from it, or with `--overwrite`.
fn check_not_overwriting(path: &std::path::Path, args: &Args) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let resuming_it = args.resume.as_ref().is_some_and(|r| same_file(r, path));
    if resuming_it || args.overwrite {
        return Ok(());
    }
    let age = meta.modified().ok().and_then(|t| t.elapsed().ok()).map_or(String::new(), |d| {
        let minutes = d.as_secs() / 60;
        match minutes {
            0 => ", written less than a minute ago".to_string(),
            1..=119 => format!(", written {minutes} minutes ago"),
            _ => format!(", written {} hours ago", minutes / 60),
        }
    });
    bail!(
        "{} already holds a checkpoint ({:.1} MB{age}), and this run would write over it. To continue that \
         run: --resume {}; to keep it and save this run elsewhere: --save OTHER.bin (or --no-save); to replace \
         it: --overwrite",
        path.display(),
        meta.len() as f64 / 1e6,
        path.display()
    )
}

/// Whether two paths name the same file (both exist).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Fails now, not after hours of training, if `path` cannot be written.
fn check_writable(path: &std::path::Path) -> Result<()> {
    gpt2::files::write_atomic(&path.with_extension("write-check"), |_| Ok(()))?;
    std::fs::remove_file(path.with_extension("write-check")).ok();
    Ok(())
}

/// The default micro-batch on the GPU at sequence length `seq`: the largest, up to 64, whose
/// parameters, optimizer state and activations fit in GPU 0's free memory.
fn gpu_default_batch(config: &ModelConfig, seq: usize, precision: Precision) -> Result<usize> {
    let (free, _) = gpt2::cuda::free_memory(0)?;
    // measured before the kernels and cuBLAS are loaded: leave them 1 GiB, so that the check
    // CudaGpt2::new makes afterwards agrees with this choice
    let free = free.saturating_sub(1 << 30);
    match gpt2::memory::largest_gpu_batch(config, seq, free, 64, precision) {
        0 => bail!(
            "not even one sequence of {seq} tokens of the {config} model fits in the GPU's {:.1} GiB of free \
             memory: try a shorter --seq or a smaller --model",
            free as f64 / (1u64 << 30) as f64
        ),
        b => Ok(b),
    }
}

/// Fills in the defaults that depend on the device and the data, and checks the flags.
fn resolve(
    args: &Args,
    state: Option<&TrainState>,
    device: Device,
    model_cfg: &ModelConfig,
    precision: Precision,
    tokenizer: Option<&Tokenizer>,
) -> Result<TrainConfig> {
    let on_gpu = device == Device::Cuda;
    let default_seq = if on_gpu { model_cfg.max_seq_len.min(1024) } else { 64.min(model_cfg.max_seq_len) };
    let seq = args.seq.or(state.map(|s| s.t as usize)).unwrap_or(default_seq);
    let batch = match args.batch.or(state.map(|s| s.b as usize)) {
        Some(b) => b,
        None if on_gpu => gpu_default_batch(model_cfg, seq, precision)?,
        None => 8,
    };
    let total_batch = args.total_batch.or(state.map(|s| s.total_batch as usize)).unwrap_or(batch.saturating_mul(seq));
    let seed = args.seed.or(state.map(|s| s.seed)).unwrap_or(DEFAULT_SEED);
    let shuffle = match (args.shuffle, args.no_shuffle) {
        (true, _) => true,
        (_, true) => false,
        // a resumed run keeps its order; a new one shuffles
        _ => state.is_none_or(|s| s.shuffle),
    };
    let lr = args.lr.unwrap_or(if model_cfg.channels <= 128 { 1e-3 } else { 6e-4 });
    check_hyperparameters(args, lr)?;
    // a resumed run keeps saving where it was resumed from
    let save = match (&args.save, &args.resume) {
        _ if args.no_save => None,
        (Some(path), _) | (None, Some(path)) => Some(path.clone()),
        (None, None) => Some(PathBuf::from(DEFAULT_SAVE)),
    };
    if let Some(path) = &save {
        check_not_overwriting(path, args)?;
    }
    for path in [&save, &args.export_llmc].into_iter().flatten() {
        check_writable(path)?;
    }
    let (train_data, val_data) = match &args.train_data {
        Some(train) => (train.clone(), args.val_data.clone()),
        None => {
            let (train, val) = gpt2::prepare::default_training_data_with(tokenizer)?;
            (train, Some(args.val_data.clone().unwrap_or(val)))
        }
    };
    if args.save_every > 0 && save.is_none() {
        bail!("--save-every needs a checkpoint to write: drop --no-save");
    }
    Ok(TrainConfig {
        train_data,
        val_data,
        batch,
        seq,
        total_batch,
        steps: args.steps,
        lr,
        warmup: args.warmup,
        schedule: args.schedule,
        min_lr_frac: args.min_lr_frac,
        adamw: AdamWConfig {
            beta1: args.beta1,
            beta2: args.beta2,
            eps: args.eps,
            weight_decay: args.weight_decay,
            decay_all: args.decay_all,
        },
        grad_clip: args.grad_clip,
        val_every: args.val_every,
        val_batches: args.val_batches,
        shuffle,
        seed,
        log: args.log.clone(),
        save,
        save_every: args.save_every,
        export_llmc: args.export_llmc.clone(),
        sample_every: args.sample_every,
        print_every: args.print_every,
        stop_at: None,
        quiet: false,
        tokenizer_digest: 0,
    })
}
