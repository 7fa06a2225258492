//! Hugging Face's GPT-2 files, in and out: a directory with `config.json` and `model.safetensors`,
//! the layout `transformers` writes for `GPT2LMHeadModel` (and vLLM and the Hub read).
//!
//! The same 16 tensors as our flat buffer (`ParamLayout`), under other names and in two ways
//! differently laid out:
//!
//! * HF's linear layers are `Conv1D`, which store the weight as (in, out): `attn.c_attn.weight` is
//!   (C, 3C) where our `qkvw` is (3C, C). Every one of the four weight matrices is transposed on the way
//!   in and again on the way out.
//! * HF's `wte` has V rows; ours has Vp (V rounded up to 128, as llm.c pads it): the padding rows are
//!   zero on import and dropped on export. The LM head is tied to `wte`: `lm_head.weight` is usually
//!   absent, and when present it must equal `wte`.
//!
//! Tensor names come with the `transformer.` prefix (what `save_pretrained` writes today) or without
//! it (`h.0.attn.c_attn.weight`, as in openai-community/gpt2's own file); both are read. The old
//! `attn.bias` / `attn.masked_bias` buffers (the causal mask) are ignored. The safetensors container
//! is parsed by the `safetensors` crate, which checks that the header's offsets and sizes agree with
//! the file.
//!
//! Twin: `checkpoint.rs`, for llm.c's and our own files. `super::load_model` picks between them.

use super::checkpoint::Checkpoint;
use super::{ParamLayout, ParamViews};
use crate::config::ModelConfig;
use crate::files::{write_atomic, FileError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView, View};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The file names inside a Hugging Face model directory.
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Rounds the vocabulary up to a multiple of 128, as llm.c pads it (50257 -> 50304).
pub fn padded_vocab(v: usize) -> usize {
    v.div_ceil(128) * 128
}

/// The numbers of a `config.json` that define the model, checked to be a GPT-2 we can run.
pub fn parse_config(path: &Path, text: &str) -> Result<ModelConfig, FileError> {
    let err = |m: String| FileError::new(path, m);
    let value: Value = serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| err("expected a JSON object".into()))?;
    if let Some(t) = obj.get("model_type") {
        if t != "gpt2" {
            return Err(err(format!("model_type is {t}, expected \"gpt2\": only GPT-2 models can be loaded")));
        }
    }
    let size = |names: &[&str]| -> Result<usize, FileError> {
        for name in names {
            if let Some(v) = obj.get(*name) {
                return v
                    .as_u64()
                    .filter(|&n| n > 0)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| err(format!("\"{name}\" is {v}, expected a positive integer")));
            }
        }
        Err(err(format!("no \"{}\" field: is this a GPT-2 config.json?", names[0])))
    };
    let (l, nh, c) = (size(&["n_layer"])?, size(&["n_head"])?, size(&["n_embd"])?);
    let (maxt, v) = (size(&["n_positions", "n_ctx"])?, size(&["vocab_size"])?);
    let padded_vocab_size =
        v.checked_next_multiple_of(128).ok_or_else(|| err(format!("\"vocab_size\" is {v}: too large for a model")))?;
    // what else a config can say that our model does not compute
    let activation = obj.get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new");
    if !matches!(activation, "gelu_new" | "gelu_pytorch_tanh") {
        return Err(err(format!(
            "activation_function is \"{activation}\": only GPT-2's tanh GELU (gelu_new) is implemented"
        )));
    }
    if let Some(eps) = obj.get("layer_norm_epsilon").and_then(Value::as_f64) {
        if (eps - 1e-5).abs() > 1e-12 {
            return Err(err(format!("layer_norm_epsilon is {eps}: only GPT-2's 1e-5 is implemented")));
        }
    }
    if let Some(inner) = obj.get("n_inner").filter(|v| !v.is_null()) {
        if inner.as_u64() != Some(4 * c as u64) {
            return Err(err(format!("n_inner is {inner}: only GPT-2's 4 * n_embd = {} is implemented", 4 * c)));
        }
    }
    let flag = |name: &str, expected: bool| -> Result<(), FileError> {
        match obj.get(name).and_then(Value::as_bool) {
            Some(b) if b != expected => Err(err(format!("\"{name}\" is {b}: only GPT-2's {expected} is implemented"))),
            _ => Ok(()),
        }
    };
    flag("scale_attn_weights", true)?;
    flag("scale_attn_by_inverse_layer_idx", false)?;
    flag("tie_word_embeddings", true)?;
    let config =
        ModelConfig { max_seq_len: maxt, vocab_size: v, padded_vocab_size, num_layers: l, num_heads: nh, channels: c };
    config.validate().map_err(|e| err(format!("describes an invalid model: {e}")))?;
    Ok(config)
}

/// How one of our 16 tensors is stored in HF's file: its name (after `transformer.`, with `{l}` for
/// the layer), and whether it is transposed (a Conv1D weight).
const HF_NAMES: [(&str, bool); 16] = [
    ("wte.weight", false),
    ("wpe.weight", false),
    ("h.{l}.ln_1.weight", false),
    ("h.{l}.ln_1.bias", false),
    ("h.{l}.attn.c_attn.weight", true),
    ("h.{l}.attn.c_attn.bias", false),
    ("h.{l}.attn.c_proj.weight", true),
    ("h.{l}.attn.c_proj.bias", false),
    ("h.{l}.ln_2.weight", false),
    ("h.{l}.ln_2.bias", false),
    ("h.{l}.mlp.c_fc.weight", true),
    ("h.{l}.mlp.c_fc.bias", false),
    ("h.{l}.mlp.c_proj.weight", true),
    ("h.{l}.mlp.c_proj.bias", false),
    ("ln_f.weight", false),
    ("ln_f.bias", false),
];

/// The HF shape of one layer's (or the whole, for unstacked tensors) slice of our tensor `i`.
fn hf_shape(layout: &ParamLayout, cfg: &ModelConfig, i: usize) -> Vec<usize> {
    let stacked = HF_NAMES[i].0.contains("{l}");
    let mut shape: Vec<usize> = if stacked { layout.shapes[i][1..].to_vec() } else { layout.shapes[i].clone() };
    if i == 0 {
        shape[0] = cfg.vocab_size; // no padding rows in HF's wte
    }
    if HF_NAMES[i].1 {
        shape.reverse(); // Conv1D: (in, out)
    }
    shape
}

/// Every (tensor index, layer, HF name) of a model with `l` layers, in our order.
fn hf_tensors(num_layers: usize) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for (i, (name, _)) in HF_NAMES.iter().enumerate() {
        if name.contains("{l}") {
            for l in 0..num_layers {
                out.push((i, l, name.replace("{l}", &l.to_string())));
            }
        } else {
            out.push((i, 0, name.to_string()));
        }
    }
    out
}

/// Decodes a tensor's bytes (F32, BF16 or F16, little-endian) into `out`, transposing a (rows, cols)
/// matrix into (cols, rows) when `transpose` is set.
fn decode_into(view: &TensorView, out: &mut [f32], transpose: Option<(usize, usize)>) {
    let data = view.data();
    let value = |k: usize| -> f32 {
        match view.dtype() {
            Dtype::F32 => f32::from_le_bytes([data[4 * k], data[4 * k + 1], data[4 * k + 2], data[4 * k + 3]]),
            Dtype::BF16 => half::bf16::from_le_bytes([data[2 * k], data[2 * k + 1]]).to_f32(),
            Dtype::F16 => half::f16::from_le_bytes([data[2 * k], data[2 * k + 1]]).to_f32(),
            _ => unreachable!("dtype checked by the caller"),
        }
    };
    match transpose {
        // the file holds (rows, cols) = (in, out); we store (out, in)
        Some((rows, cols)) => {
            for r in 0..rows {
                for c in 0..cols {
                    out[c * rows + r] = value(r * cols + c);
                }
            }
        }
        None => out.iter_mut().enumerate().for_each(|(k, o)| *o = value(k)),
    }
}

/// Reads a Hugging Face GPT-2: a directory (`config.json` + `model.safetensors`) or a `.safetensors`
/// file (with `config.json` beside it when there is one; else the sizes are read from the tensor
/// shapes, and the head count assumes GPT-2's head size of 64, with a warning).
pub fn load(path: &Path) -> Result<Checkpoint, FileError> {
    let (weights, config_path) = if path.is_dir() {
        let weights = path.join(WEIGHTS_FILE);
        if !weights.exists() {
            let why = if path.join("model.safetensors.index.json").exists() {
                "the model is split into several safetensors files, which is not supported yet"
            } else if path.join("pytorch_model.bin").exists() {
                "only pytorch_model.bin is there: load it in transformers and save_pretrained it to get safetensors"
            } else {
                "not a Hugging Face model directory"
            };
            return Err(FileError::new(path, format!("no {WEIGHTS_FILE}: {why}")));
        }
        let config = path.join(CONFIG_FILE);
        if !config.exists() {
            return Err(FileError::new(path, format!("no {CONFIG_FILE} beside {WEIGHTS_FILE}")));
        }
        (weights, Some(config))
    } else {
        let config = path.parent().map(|d| d.join(CONFIG_FILE)).filter(|c| c.exists());
        (path.to_path_buf(), config)
    };
    let config = match &config_path {
        Some(c) => {
            let text = std::fs::read_to_string(c).map_err(|e| FileError::new(c, format!("cannot read: {e}")))?;
            Some(parse_config(c, &text)?)
        }
        None => None,
    };
    let file = std::fs::File::open(&weights).map_err(|e| FileError::new(&weights, format!("cannot read: {e}")))?;
    // SAFETY: the map is read-only and lives only inside this function; like every reader of a mapped
    // file we assume no other process truncates it while we read (data.rs maps shards the same way).
    let mmap =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FileError::new(&weights, format!("cannot map: {e}")))?;
    let tensors = SafeTensors::deserialize(&mmap).map_err(|e| {
        let which = culprit(&mmap).map_or(String::new(), |name| format!(" (tensor {name})"));
        FileError::new(&weights, format!("not a valid safetensors file: {e}{which}"))
    })?;
    let params = from_tensors(&weights, &tensors, config)?;
    // the tokenizer: the vocab.json + merges.txt beside the weights, when they are not GPT-2's
    let dir = weights.parent().unwrap_or(Path::new("."));
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    let tokenizer_digest = match std::fs::read_to_string(&vocab) {
        Ok(text) if text != crate::tokenizer::GPT2_ENCODER_JSON && merges.exists() => {
            crate::tokenizer::Tokenizer::from_files(&vocab, &merges)
                .map_err(|e| FileError::new(&vocab, format!("cannot read the tokenizer beside the model: {e}")))?
                .digest()
        }
        _ => 0,
    };
    Ok(Checkpoint { config: params.0, params: params.1, optimizer: None, tokenizer_digest })
}

/// When the crate rejects a header, the first tensor whose shape and dtype disagree with its byte range,
/// or whose range runs past the end of the file, to name in the error.
fn culprit(bytes: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: HashMap<String, Value> = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let data_len = bytes.len() - 8 - n;
    let width = |d: &str| match d {
        "F64" | "I64" | "U64" => Some(8),
        "F32" | "I32" | "U32" => Some(4),
        "F16" | "BF16" | "I16" | "U16" => Some(2),
        "I8" | "U8" | "BOOL" => Some(1),
        _ => None,
    };
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    names
        .into_iter()
        .find(|name| {
            let t = &header[*name];
            let shape: Option<Vec<u64>> = t["shape"].as_array().and_then(|a| a.iter().map(Value::as_u64).collect());
            let range: Option<Vec<u64>> =
                t["data_offsets"].as_array().and_then(|a| a.iter().map(Value::as_u64).collect());
            let (Some(shape), Some(range), Some(w)) = (shape, range, t["dtype"].as_str().and_then(width)) else {
                return true;
            };
            let bytes = shape.iter().try_fold(w as u64, |acc, &d| acc.checked_mul(d));
            range.len() != 2 || range[1] < range[0] || range[1] > data_len as u64 || bytes != Some(range[1] - range[0])
        })
        .cloned()
}

/// The tensors of a safetensors file by their names without the optional "transformer." prefix,
/// less the causal-mask buffers; and `lm_head.weight` apart, if the file has it.
fn tensors_by_name<'a>(
    path: &Path,
    st: &'a SafeTensors,
) -> Result<(HashMap<String, TensorView<'a>>, Option<TensorView<'a>>), FileError> {
    let mut by_name: HashMap<String, TensorView> = HashMap::new();
    let mut lm_head = None;
    for (name, view) in st.iter() {
        let short = name.strip_prefix("transformer.").unwrap_or(name);
        if short.ends_with(".attn.bias") || short.ends_with(".attn.masked_bias") {
            continue; // the causal mask buffers of old checkpoints, not parameters
        }
        if short == "lm_head.weight" {
            lm_head = Some(view);
            continue;
        }
        if by_name.insert(short.to_string(), view).is_some() {
            let message = format!("tensor {short} appears twice (with and without the transformer. prefix)");
            return Err(FileError::new(path, message));
        }
    }
    Ok((by_name, lm_head))
}

/// Checks that a file's `lm_head.weight` (of `shape`) is its token embedding, the first tensor of
/// `params`: our LM head is always tied to it.
fn check_tied_head(path: &Path, head: &TensorView, shape: &[usize], params: &[f32]) -> Result<(), FileError> {
    check_tensor(path, "lm_head.weight", head, shape)?;
    let mut values = vec![0.0f32; shape.iter().product()];
    decode_into(head, &mut values, None);
    let wte = &params[..values.len()];
    let diff = values.iter().zip(wte).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    if diff > 0.0 {
        return Err(FileError::new(
            path,
            format!(
                "lm_head.weight differs from wte.weight (max abs difference {diff:e}): this model's LM head is not \
                 tied to its token embedding, and ours always is"
            ),
        ));
    }
    Ok(())
}

/// Our config and flat parameters from the tensors of a safetensors file.
fn from_tensors(
    path: &Path,
    st: &SafeTensors,
    config: Option<ModelConfig>,
) -> Result<(ModelConfig, Vec<f32>), FileError> {
    let err = |m: String| FileError::new(path, m);
    let (by_name, lm_head) = tensors_by_name(path, st)?;
    let config = match config {
        Some(c) => c,
        None => infer_config(path, &by_name)?,
    };
    // the file's layers, counted before the config's count is trusted to size anything
    let layers = (0..).take_while(|l| by_name.contains_key(&format!("h.{l}.ln_1.weight"))).count();
    if layers != config.num_layers {
        return Err(err(format!(
            "the config says {} layers (n_layer), but the file holds {layers} (h.0 to h.{})",
            config.num_layers,
            layers as isize - 1
        )));
    }
    let layout = ParamLayout::new(&config);
    let expected = hf_tensors(config.num_layers);
    let known: HashSet<&str> = expected.iter().map(|e| e.2.as_str()).collect();
    let mut unknown: Vec<&String> = by_name.keys().filter(|k| !known.contains(k.as_str())).collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(err(format!(
            "tensor {} is not part of a GPT-2 with {} layers (GPT2LMHeadModel)",
            unknown[0], config.num_layers
        )));
    }
    // every tensor is present and has its shape before the model is allocated: a config.json that
    // claims a model larger than the file holds is refused here, not by a failed allocation
    for (i, _, name) in &expected {
        let view = by_name.get(name).ok_or_else(|| err(format!("tensor {name} is missing")))?;
        check_tensor(path, name, view, &hf_shape(&layout, &config, *i))?;
    }
    let mut params = vec![0.0f32; layout.total];
    for (i, l, name) in &expected {
        let view = by_name.get(name).ok_or_else(|| err(format!("tensor {name} is missing")))?;
        let shape = hf_shape(&layout, &config, *i);
        let n: usize = shape.iter().product();
        // layer l's part of our tensor i (HF keeps one tensor per layer, we stack them)
        let out = &mut params[layout.range(*i)][l * n..(l + 1) * n];
        let transpose = HF_NAMES[*i].1.then(|| (shape[0], shape[1]));
        decode_into(view, out, transpose);
    }
    if let Some(head) = lm_head {
        check_tied_head(path, &head, &hf_shape(&layout, &config, 0), &params)?;
    }
    Ok((config, params))
}

/// Checks a tensor's dtype and shape against what GPT-2 needs there.
fn check_tensor(path: &Path, name: &str, view: &TensorView, shape: &[usize]) -> Result<(), FileError> {
    if !matches!(view.dtype(), Dtype::F32 | Dtype::BF16 | Dtype::F16) {
        return Err(FileError::new(
            path,
            format!("tensor {name} has dtype {:?}: only F32, BF16 and F16 are supported", view.dtype()),
        ));
    }
    if view.shape() != shape {
        return Err(FileError::new(
            path,
            format!("tensor {name} has shape {:?}, expected {shape:?} for this config", view.shape()),
        ));
    }
    Ok(())
}

/// The config of a bare `.safetensors` file, read from its tensor shapes.
fn infer_config(path: &Path, by_name: &HashMap<String, TensorView>) -> Result<ModelConfig, FileError> {
    let shape = |name: &str| -> Result<Vec<usize>, FileError> {
        by_name.get(name).map(|v| v.shape().to_vec()).ok_or_else(|| {
            FileError::new(path, format!("tensor {name} is missing (and no {CONFIG_FILE} beside the file)"))
        })
    };
    let (wte, wpe) = (shape("wte.weight")?, shape("wpe.weight")?);
    if wte.len() != 2 || wpe.len() != 2 {
        return Err(FileError::new(path, format!("wte.weight {wte:?} and wpe.weight {wpe:?} must be matrices")));
    }
    let layers = (0..).take_while(|l| by_name.contains_key(&format!("h.{l}.ln_1.weight"))).count();
    let c = wte[1];
    if layers == 0 || c == 0 || !c.is_multiple_of(64) {
        return Err(FileError::new(
            path,
            format!("cannot tell the model's sizes from its tensors (C = {c}, {layers} layers): put its {CONFIG_FILE} beside it"),
        ));
    }
    eprintln!(
        "warning: {}: no {CONFIG_FILE} beside it; assuming GPT-2's head size 64, so {} heads",
        path.display(),
        c / 64
    );
    let config = ModelConfig {
        max_seq_len: wpe[0],
        vocab_size: wte[0],
        padded_vocab_size: padded_vocab(wte[0]),
        num_layers: layers,
        num_heads: c / 64,
        channels: c,
    };
    config.validate().map_err(|e| FileError::new(path, format!("the tensors describe an invalid model: {e}")))?;
    Ok(config)
}

/// The dtype to write weights in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportDtype {
    F32,
    Bf16,
}

impl crate::choice::Choice for ExportDtype {
    const WHAT: &'static str = "dtype";
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (ExportDtype::F32, "f32", "32-bit floats, as trained"),
        (ExportDtype::Bf16, "bf16", "bfloat16: half the bytes"),
    ];
}

/// A tensor whose bytes are made when the writer asks for them, so only one tensor at a time is held
/// in its exported form.
struct LazyTensor<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    make: Box<dyn Fn() -> Vec<u8> + 'a>,
}

impl View for LazyTensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned((self.make)())
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// `config.json` for `GPT2LMHeadModel`, as `transformers` writes it.
pub fn config_json(cfg: &ModelConfig, dtype: ExportDtype) -> Value {
    let mut value = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "attn_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "resid_pdrop": 0.1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-5,
        "n_ctx": cfg.max_seq_len,
        "n_embd": cfg.channels,
        "n_head": cfg.num_heads,
        "n_inner": null,
        "n_layer": cfg.num_layers,
        "n_positions": cfg.max_seq_len,
        "reorder_and_upcast_attn": false,
        "scale_attn_by_inverse_layer_idx": false,
        "scale_attn_weights": true,
        "summary_activation": null,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": true,
        "summary_type": "cls_index",
        "summary_use_proj": true,
        "tie_word_embeddings": true,
        "torch_dtype": match dtype { ExportDtype::F32 => "float32", ExportDtype::Bf16 => "bfloat16" },
        "use_cache": true,
        "vocab_size": cfg.vocab_size,
    });
    if cfg.vocab_size == crate::config::GPT2_VOCAB_SIZE {
        let eot = crate::config::EOT_TOKEN;
        value["bos_token_id"] = json!(eot);
        value["eos_token_id"] = json!(eot);
        value["task_specific_params"] = json!({"text-generation": {"do_sample": true, "max_length": 50}});
    }
    value
}

/// Writes `params` as HF's `model.safetensors` (names with the `transformer.` prefix, Conv1D weights
/// transposed, wte without its padding rows, no `lm_head.weight`: tied).
pub fn save_safetensors(path: &Path, cfg: &ModelConfig, params: &[f32], dtype: ExportDtype) -> Result<(), FileError> {
    let layout = ParamLayout::new(cfg);
    assert_eq!(params.len(), layout.total);
    let sizes = layout.sizes();
    let views = ParamViews::new(&sizes, params);
    let slots: [&[f32]; 16] = [
        views.wte,
        views.wpe,
        views.ln1w,
        views.ln1b,
        views.qkvw,
        views.qkvb,
        views.attprojw,
        views.attprojb,
        views.ln2w,
        views.ln2b,
        views.fcw,
        views.fcb,
        views.fcprojw,
        views.fcprojb,
        views.lnfw,
        views.lnfb,
    ];
    let (st_dtype, width) = match dtype {
        ExportDtype::F32 => (Dtype::F32, 4),
        ExportDtype::Bf16 => (Dtype::BF16, 2),
    };
    let mut tensors = Vec::new();
    for (i, l, name) in hf_tensors(cfg.num_layers) {
        let shape = hf_shape(&layout, cfg, i);
        let n: usize = shape.iter().product();
        let ours = &slots[i][l * n..(l + 1) * n]; // for wte: its first V rows
        let transpose = HF_NAMES[i].1.then(|| (shape[0], shape[1]));
        let make = move || {
            let mut bytes = Vec::with_capacity(n * width);
            let mut put = |x: f32| match dtype {
                ExportDtype::F32 => bytes.extend_from_slice(&x.to_le_bytes()),
                ExportDtype::Bf16 => bytes.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
            };
            match transpose {
                // HF's (rows, cols) = (in, out) from our (out, in)
                Some((rows, cols)) => {
                    for r in 0..rows {
                        for c in 0..cols {
                            put(ours[c * rows + r]);
                        }
                    }
                }
                None => ours.iter().for_each(|&x| put(x)),
            }
            bytes
        };
        tensors.push((format!("transformer.{name}"), LazyTensor { dtype: st_dtype, shape, make: Box::new(make) }));
    }
    // transformers refuses safetensors files without this metadata
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, format!("cannot create the directory: {e}")))?;
    }
    // serialize_to_file writes a temporary file beside `path` and renames it: atomic like our writes
    safetensors::serialize_to_file(tensors, Some(metadata), path)
        .map_err(|e| FileError::new(path, format!("cannot write: {e}")))?;
    // the crate's temporary file is private (0600); a model file is for sharing, like our other files
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| FileError::new(path, format!("cannot set permissions: {e}")))?;
    }
    Ok(())
}

/// Writes a directory `transformers` loads as it is: config.json, model.safetensors and, for GPT-2's
/// vocabulary, the tokenizer files (vocab.json = encoder.json, merges.txt = vocab.bpe, and
/// tokenizer_config.json). Returns the files written.
pub fn save_dir(
    dir: &Path,
    cfg: &ModelConfig,
    params: &[f32],
    dtype: ExportDtype,
) -> Result<Vec<std::path::PathBuf>, FileError> {
    save_dir_with_tokenizer(dir, cfg, params, dtype, None)
}

/// `save_dir` with the model's tokenizer: `tokenizer_dir` is a directory from `gpt2 tokenizer train`
/// (None: GPT-2's). Its files go in as transformers names them: vocab.json (= encoder.json), merges.txt
/// (= vocab.bpe) and tokenizer.json, so that `AutoTokenizer` loads it and gives our ids.
pub fn save_dir_with_tokenizer(
    dir: &Path,
    cfg: &ModelConfig,
    params: &[f32],
    dtype: ExportDtype,
    tokenizer_dir: Option<&Path>,
) -> Result<Vec<std::path::PathBuf>, FileError> {
    std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, format!("cannot create the directory: {e}")))?;
    let mut written = Vec::new();
    let mut text_file = |name: &str, text: &str| -> Result<(), FileError> {
        let path = dir.join(name);
        write_atomic(&path, |w| w.write_all(text.as_bytes()))?;
        written.push(path);
        Ok(())
    };
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("a JSON value serializes") + "\n";
    if let Some(tok_dir) = tokenizer_dir {
        use crate::tokenizer::{save, Tokenizer};
        let tok = Tokenizer::from_dir(tok_dir).map_err(|e| FileError::new(tok_dir, e.to_string()))?;
        let eot = tok.eot_token();
        let mut config = config_json(cfg, dtype);
        config["bos_token_id"] = json!(eot);
        config["eos_token_id"] = json!(eot);
        text_file(CONFIG_FILE, &pretty(&config))?;
        for (from, to) in [
            (save::ENCODER_JSON, "vocab.json"),
            (save::VOCAB_BPE, "merges.txt"),
            (save::TOKENIZER_JSON, "tokenizer.json"),
        ] {
            let path = tok_dir.join(from);
            let text =
                std::fs::read_to_string(&path).map_err(|e| FileError::new(&path, format!("cannot read: {e}")))?;
            text_file(to, &text)?;
        }
        let tokenizer_config = json!({
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": cfg.max_seq_len,
            "bos_token": crate::tokenizer::EOT_TEXT,
            "eos_token": crate::tokenizer::EOT_TEXT,
            "unk_token": crate::tokenizer::EOT_TEXT,
            "add_prefix_space": false,
        });
        text_file("tokenizer_config.json", &pretty(&tokenizer_config))?;
        text_file("generation_config.json", &pretty(&json!({"bos_token_id": eot, "eos_token_id": eot})))?;
    } else {
        text_file(CONFIG_FILE, &pretty(&config_json(cfg, dtype)))?;
    }
    if tokenizer_dir.is_none() && cfg.vocab_size == crate::config::GPT2_VOCAB_SIZE {
        text_file("vocab.json", crate::tokenizer::GPT2_ENCODER_JSON)?;
        text_file("merges.txt", crate::tokenizer::GPT2_VOCAB_BPE)?;
        let tokenizer_config = json!({
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": cfg.max_seq_len,
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "add_prefix_space": false,
        });
        text_file("tokenizer_config.json", &pretty(&tokenizer_config))?;
        let generation = json!({"bos_token_id": crate::config::EOT_TOKEN, "eos_token_id": crate::config::EOT_TOKEN});
        text_file("generation_config.json", &pretty(&generation))?;
    } else if tokenizer_dir.is_none() {
        eprintln!(
            "note: vocabulary of {} tokens is not GPT-2's {}: no tokenizer files written (give --tokenizer)",
            cfg.vocab_size,
            crate::config::GPT2_VOCAB_SIZE
        );
    }
    let weights = dir.join(WEIGHTS_FILE);
    save_safetensors(&weights, cfg, params, dtype)?;
    written.push(weights);
    Ok(written)
}
