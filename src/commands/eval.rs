//! `eval`: a model's validation loss on token shards (batched exactly as `train` validates), per token
//! and per byte of the text (`gpt2::train::per_byte`, the bytes decoded with --tokenizer), and its
//! HellaSwag accuracy (`src/hellaswag.rs`, llm.c's completion-style scoring). The last line is JSON.

use anyhow::{bail, Result};
use gpt2::cpu::backend::CpuBackend;
use gpt2::cuda::{CudaBackend, Matmul};
use gpt2::data::{DataLoader, Position};
use gpt2::device::{select_device, Device};
use gpt2::hellaswag;
use gpt2::train::{Backend, ValText};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The model: an llm.c model file, one of our checkpoints, or a Hugging Face GPT-2 (directory or .safetensors).
    #[arg(long)]
    pub init: PathBuf,
    /// Validation token shards (llm.c format), a path or glob: report the mean loss over --val-batches
    /// [default, when --hellaswag is not given either: the shipped text's val shard, as `train` uses].
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
    /// Where to run: auto (the GPU when one is usable, else the CPU), cpu or cuda.
    #[arg(long, default_value = "auto", value_parser = super::choice::<Device>())]
    pub device: Device,
    /// On the GPU, which kernels do the matrix multiplies.
    #[arg(long, default_value = "handwritten", value_parser = super::choice::<Matmul>())]
    pub matmul: Matmul,
    /// The tokenizer the model was trained with (a directory from `tokenizer train`) [default: GPT-2's];
    /// a model whose file records another is refused.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    let ckpt = gpt2::model::load_model(&args.init)?;
    let tokenizer = gpt2::tokenizer::Tokenizer::gpt2_or_dir(args.tokenizer.as_deref())?;
    ckpt.check_tokenizer(&args.init, &tokenizer)?;
    let config = ckpt.config;
    // the same arguments, with the validation data resolved (--val-data, or train's default)
    let args = &Args { val_data: val_data(args, &config, &tokenizer)?, ..args.clone() };
    let device = select_device(args.device)?;
    let on_gpu = device == Device::Cuda;
    let seq = args.seq.unwrap_or(if on_gpu { config.max_seq_len.min(1024) } else { config.max_seq_len.min(64) });
    if args.batch == 0 || seq == 0 || seq > config.max_seq_len {
        bail!("--batch must be positive and --seq between 1 and the model's context {}", config.max_seq_len);
    }
    // HellaSwag first: read and check the file before the model is put anywhere
    let examples = hellaswag_examples(args, &config)?;
    let rows = args.hellaswag_rows.unwrap_or(if on_gpu { 64 } else { 16 });
    if rows < hellaswag::ENDINGS {
        bail!("--hellaswag-rows must be at least {} (one example's endings)", hellaswag::ENDINGS);
    }
    let mut backend: Box<dyn Backend> = if on_gpu {
        // the GPU's buffers are sized for the largest batch of either evaluation
        let hs_t = examples.iter().map(|e| e.longest_row() - 1).max().unwrap_or(0);
        let (max_b, max_t) = if args.val_data.is_some() { (args.batch, seq) } else { (0, 0) };
        let (max_b, max_t) = if examples.is_empty() { (max_b, max_t) } else { (max_b.max(rows), max_t.max(hs_t)) };
        let fp32 = gpt2::precision::Precision::Fp32;
        Box::new(CudaBackend::new(0, args.matmul, fp32, config, &ckpt.params, max_b, max_t)?)
    } else {
        if args.val_data.is_some() {
            gpt2::memory::check_cpu_memory(&config, args.batch, seq, gpt2::precision::Precision::Fp32)?;
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
        let (loss, tokens) = val_loss(backend.as_mut(), pattern, args.batch, seq, args.val_batches, &config)?;
        result.insert("val_loss".into(), serde_json::json!(loss.to_string().parse::<f64>().unwrap_or(f64::NAN)));
        result.insert("tokens".into(), serde_json::json!(tokens));
        // per byte of the validation text (the tokens decoded with the tokenizer): comparable across tokenizers
        let text = ValText::measure(pattern, args.batch, seq, args.val_batches, &tokenizer)?;
        eprintln!("{}", text.describe(loss));
        result.insert("val_bytes".into(), serde_json::json!(text.bytes));
        result.insert("val_nats_per_byte".into(), serde_json::json!(text.nats_per_byte(loss)));
        result.insert("val_bits_per_byte".into(), serde_json::json!(text.bits_per_byte(loss)));
    }
    if !examples.is_empty() {
        let acc = score_hellaswag(backend.as_mut(), &examples, rows)?;
        result.insert("hellaswag_acc".into(), serde_json::json!(acc.acc()));
        result.insert("hellaswag_acc_norm".into(), serde_json::json!(acc.acc_norm()));
        result.insert("examples".into(), serde_json::json!(acc.examples));
    }
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}

/// The validation shards to score: --val-data, or with neither it nor --hellaswag the ones `train`
/// uses by default (the shipped text's, encoded with --tokenizer when given, else for a model of
/// GPT-2's vocabulary).
fn val_data(
    args: &Args,
    config: &gpt2::config::ModelConfig,
    tokenizer: &gpt2::tokenizer::Tokenizer,
) -> Result<Option<String>> {
    let custom = args.tokenizer.as_ref().map(|_| tokenizer);
    Ok(match (&args.val_data, &args.hellaswag) {
        (Some(pattern), _) => Some(pattern.clone()),
        (None, Some(_)) => None,
        (None, None) if custom.is_some() || config.vocab_size == gpt2::config::GPT2_VOCAB_SIZE => {
            let (_, val) = gpt2::prepare::default_training_data_with(custom)?;
            eprintln!("validation data: the shipped text's val shard {val} (as train's default; --val-data to choose)");
            Some(val)
        }
        (None, None) => bail!(
            "{}: has a {}-token vocabulary, not GPT-2's, so the shipped text's shards do not fit it: give \
             --val-data (shards of its tokenizer) and/or --hellaswag",
            args.init.display(),
            config.vocab_size
        ),
    })
}

/// The --hellaswag examples (the first --hellaswag-examples of them), checked to fit the model.
fn hellaswag_examples(args: &Args, config: &gpt2::config::ModelConfig) -> Result<Vec<hellaswag::Example>> {
    let Some(path) = &args.hellaswag else { return Ok(Vec::new()) };
    if config.vocab_size != gpt2::config::GPT2_VOCAB_SIZE || args.tokenizer.is_some() {
        bail!("HellaSwag is tokenized with GPT-2's vocabulary; this model has {} tokens", config.vocab_size);
    }
    let mut examples = hellaswag::read(path)?;
    if args.hellaswag_examples > 0 {
        examples.truncate(args.hellaswag_examples);
    }
    hellaswag::check_fits(&examples, config.max_seq_len, "the model's context")
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(examples)
}

/// The mean loss over the first `batches` batches of (b, t) of `pattern`, as `train` validates: the
/// f32 sum of batch means over the batch count. Returns it and the tokens scored.
fn val_loss(
    backend: &mut dyn Backend,
    pattern: &str,
    b: usize,
    t: usize,
    batches: usize,
    config: &gpt2::config::ModelConfig,
) -> Result<(f32, usize)> {
    let mut loader = DataLoader::new(pattern, b, t, config.vocab_size, false, 0)?;
    let batches = batches.min(loader.batches_per_epoch());
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
    let loss = sum / batches as f32;
    eprintln!("val loss {loss:.4} over {batches} batches of B={b} T={t}");
    Ok((loss, batches * b * t))
}

/// HellaSwag's accuracies, scored in forward passes of `rows` rows, with a progress line every 2 s.
fn score_hellaswag(
    backend: &mut dyn Backend,
    examples: &[hellaswag::Example],
    rows: usize,
) -> Result<hellaswag::Accuracy> {
    let start = Instant::now();
    let mut last = Instant::now();
    let n = examples.len();
    let (acc, _) = hellaswag::score(
        examples,
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
    Ok(acc)
}
