//! Hugging Face GPT-2 files in and out (`src/model/hf.rs`), checked against `transformers` itself:
//! `reference/hf_reference.py` saved small random `GPT2LMHeadModel`s in tests/fixtures/hf/ (the layout
//! `save_pretrained` writes, a bf16 one, and openai-community/gpt2's unprefixed layout with its mask
//! buffers and lm_head.weight) with their per-position losses on fixed tokens as transformers computes them.

use gpt2::cpu::gpt2::Gpt2;
use gpt2::model::hf::{self, ExportDtype};
use gpt2::model::{checkpoint, load_model};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const FIXTURES: &str = "tests/fixtures/hf";
const MODELS: [&str; 3] = ["gpt2vocab_bf16", "tiny_prefixed", "tiny_openai_style"];

fn fixture() -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("hf_fixture.json")).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn model_dir(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// Our per-position losses (B, T) on the fixture's tokens, next to transformers' losses.
fn our_losses(params: &[f32], config: gpt2::config::ModelConfig, want: &Value) -> (Vec<f32>, Vec<f32>) {
    let tokens: Vec<Vec<u32>> = serde_json::from_value(want["tokens"].clone()).unwrap();
    let (b, t) = (tokens.len(), tokens[0].len() - 1);
    let inputs: Vec<u32> = tokens.iter().flat_map(|r| r[..t].to_vec()).collect();
    let targets: Vec<u32> = tokens.iter().flat_map(|r| r[1..].to_vec()).collect();
    let mut model = Gpt2::new(config, params.to_vec());
    model.forward(&inputs, Some(&targets), b, t);
    let theirs: Vec<Vec<f32>> = serde_json::from_value(want["losses"].clone()).unwrap();
    (model.losses().to_vec(), theirs.concat())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

// Tolerance: the fixture's f32 losses against f64 differ by ~1e-6 (the reference prints it); 1e-4
// leaves room for a different summation order, and is far below what a transposed or misplaced
// tensor does (differences of order 0.1 or more).
const TOL: f32 = 1e-4;

#[test]
fn import_gives_transformers_losses() {
    let fx = fixture();
    println!("{:>18} | {:>8} | {:>10} | {:>10} | {:>9}", "model", "tokens", "ours", "theirs", "max diff");
    for name in MODELS {
        let want = &fx["models"][name];
        let ckpt = load_model(&model_dir(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cfg = &want["config"];
        assert_eq!(ckpt.config.num_layers as u64, cfg["n_layer"].as_u64().unwrap());
        assert_eq!(ckpt.config.vocab_size as u64, cfg["vocab_size"].as_u64().unwrap());
        assert_eq!(ckpt.config.padded_vocab_size, hf::padded_vocab(ckpt.config.vocab_size));
        // the padding rows of wte are zero
        let c = ckpt.config.channels;
        assert!(ckpt.params[ckpt.config.vocab_size * c..ckpt.config.padded_vocab_size * c].iter().all(|&x| x == 0.0));
        let (ours, theirs) = our_losses(&ckpt.params, ckpt.config, want);
        let diff = max_abs_diff(&ours, &theirs);
        let mean = |x: &[f32]| x.iter().sum::<f32>() / x.len() as f32;
        println!("{name:>18} | {:>8} | {:>10.6} | {:>10.6} | {diff:>9.2e}", ours.len(), mean(&ours), mean(&theirs));
        assert!(diff < TOL, "{name}: max abs loss difference {diff}");
    }
}

#[test]
fn a_bare_safetensors_file_reads_its_config_beside_it() {
    let dir = load_model(&model_dir("tiny_prefixed")).unwrap();
    let file = load_model(&model_dir("tiny_prefixed").join("model.safetensors")).unwrap();
    assert_eq!(dir.config, file.config);
    assert_eq!(dir.params, file.params);
}

#[test]
fn export_then_import_gives_the_same_weights_and_losses() {
    let fx = fixture();
    for name in MODELS {
        let ckpt = load_model(&model_dir(name)).unwrap();
        let out = tempfile::tempdir().unwrap();
        hf::save_dir(out.path(), &ckpt.config, &ckpt.params, ExportDtype::F32).unwrap();
        let back = load_model(out.path()).unwrap();
        assert_eq!(back.config, ckpt.config, "{name}");
        assert!(back.params == ckpt.params, "{name}: f32 export changed the weights");
        let (ours, theirs) = our_losses(&back.params, back.config, &fx["models"][name]);
        let diff = max_abs_diff(&ours, &theirs);
        println!("{name}: exported and re-imported, max abs loss difference to transformers {diff:.2e}");
        assert!(diff < TOL);
    }
    // the bf16 model's weights are bf16 numbers: a bf16 export keeps them exactly
    let ckpt = load_model(&model_dir("gpt2vocab_bf16")).unwrap();
    let out = tempfile::tempdir().unwrap();
    hf::save_dir(out.path(), &ckpt.config, &ckpt.params, ExportDtype::Bf16).unwrap();
    assert!(load_model(out.path()).unwrap().params == ckpt.params);
}

#[test]
fn export_writes_the_layout_transformers_reads() {
    let ckpt = load_model(&model_dir("gpt2vocab_bf16")).unwrap();
    let out = tempfile::tempdir().unwrap();
    hf::save_dir(out.path(), &ckpt.config, &ckpt.params, ExportDtype::F32).unwrap();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["architectures"][0], "GPT2LMHeadModel");
    assert_eq!(config["n_embd"], 16);
    assert_eq!(config["vocab_size"], 50257);
    assert_eq!(config["activation_function"], "gelu_new");
    let bytes = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 2 + 2 * 12 + 2, "wte, wpe, 12 per layer, ln_f: no lm_head (tied)");
    assert_eq!(st.tensor("transformer.wte.weight").unwrap().shape(), [50257, 16], "no padding rows");
    assert_eq!(st.tensor("transformer.h.1.attn.c_attn.weight").unwrap().shape(), [16, 48], "Conv1D (in, out)");
    assert_eq!(st.tensor("transformer.h.0.mlp.c_proj.weight").unwrap().shape(), [64, 16]);
    // the tokenizer files are GPT-2's own
    assert_eq!(std::fs::read(out.path().join("vocab.json")).unwrap(), std::fs::read("data/gpt2/encoder.json").unwrap());
    assert_eq!(std::fs::read(out.path().join("merges.txt")).unwrap(), std::fs::read("data/gpt2/vocab.bpe").unwrap());
    assert!(out.path().join("tokenizer_config.json").exists());
}

#[test]
fn the_exported_tokenizer_gives_tiktokens_ids() {
    let ckpt = load_model(&model_dir("gpt2vocab_bf16")).unwrap();
    let out = tempfile::tempdir().unwrap();
    hf::save_dir(out.path(), &ckpt.config, &ckpt.params, ExportDtype::F32).unwrap();
    let tok = gpt2::tokenizer::Tokenizer::from_files(&out.path().join("vocab.json"), &out.path().join("merges.txt"))
        .expect("the exported tokenizer files load");
    let texts = fixture()["texts"].as_array().unwrap().clone();
    for t in &texts {
        let want: Vec<u32> = serde_json::from_value(t["ids"].clone()).unwrap();
        assert_eq!(tok.encode(t["text"].as_str().unwrap()), want, "{}", t["text"]);
    }
    println!("{} texts: the exported vocab.json + merges.txt give tiktoken's ids", texts.len());
}

#[test]
fn llmc_export_round_trips() {
    let ckpt = load_model(&model_dir("tiny_openai_style")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("model.bin");
    checkpoint::save_llmc(&path, &ckpt.config, &ckpt.params).unwrap();
    let back = load_model(&path).unwrap();
    assert_eq!(back.config, ckpt.config);
    assert!(back.params == ckpt.params);
}

/// The tensors of a fixture model, owned, to rewrite into broken files.
fn tensors_of(name: &str) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(model_dir(name).join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect()
}

/// Writes `tensors` (and the fixture's config.json, or `config`) as a model directory; returns the error of loading it.
fn load_error(tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)], config: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &dir.path().join("model.safetensors")).unwrap();
    let config_text = match config {
        Some(c) => c.to_string(),
        None => std::fs::read_to_string(model_dir("tiny_prefixed").join("config.json")).unwrap(),
    };
    std::fs::write(dir.path().join("config.json"), config_text).unwrap();
    let err = match load_model(dir.path()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    println!("{err}");
    assert!(err.contains(&dir.path().display().to_string()), "the error names the file: {err}");
    err
}

#[test]
fn bad_models_are_clear_errors_naming_the_file_and_tensor() {
    let good = tensors_of("tiny_prefixed");
    // a missing tensor
    let missing: Vec<_> = good.iter().filter(|t| t.0 != "transformer.h.1.mlp.c_fc.bias").cloned().collect();
    assert!(load_error(&missing, None).contains("h.1.mlp.c_fc.bias is missing"));
    // a misshapen one: c_attn stored (3C, C) as in llm.c instead of Conv1D's (C, 3C)
    let mut misshapen = good.clone();
    let t = misshapen.iter_mut().find(|t| t.0 == "transformer.h.0.attn.c_attn.weight").unwrap();
    t.2.reverse();
    let err = load_error(&misshapen, None);
    assert!(err.contains("h.0.attn.c_attn.weight") && err.contains("shape [96, 32]"), "{err}");
    // an unsupported dtype
    let mut ints = good.clone();
    ints.iter_mut().find(|t| t.0 == "transformer.ln_f.bias").unwrap().1 = Dtype::I32;
    let err = load_error(&ints, None);
    assert!(err.contains("ln_f.bias") && err.contains("I32"), "{err}");
    // an untied LM head
    let mut untied = good.clone();
    let wte = untied.iter().find(|t| t.0 == "transformer.wte.weight").unwrap().clone();
    let mut head = wte.3.clone();
    head[0] ^= 0x40;
    untied.push(("lm_head.weight".into(), wte.1, wte.2.clone(), head));
    assert!(load_error(&untied, None).contains("lm_head.weight differs from wte.weight"));
    // a tensor that is not GPT-2's
    let mut extra = good.clone();
    extra.push(("transformer.h.5.attn.c_attn.weight".into(), Dtype::F32, vec![1], vec![0; 4]));
    assert!(load_error(&extra, None).contains("h.5.attn.c_attn.weight is not part of a GPT-2 with 2 layers"));
    // a config that is not GPT-2's
    let llama =
        r#"{"model_type": "llama", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 32, "vocab_size": 97}"#;
    assert!(load_error(&good, Some(llama)).contains("model_type is \"llama\""));
    let relu = r#"{"model_type": "gpt2", "activation_function": "relu", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 32, "vocab_size": 97}"#;
    assert!(load_error(&good, Some(relu)).contains("activation_function is \"relu\""));
    let no_layers = r#"{"model_type": "gpt2", "n_head": 2, "n_embd": 32, "n_positions": 32, "vocab_size": 97}"#;
    assert!(load_error(&good, Some(no_layers)).contains("no \"n_layer\" field"));
}

#[test]
fn a_safetensors_header_that_lies_about_sizes_is_an_error() {
    let src = std::fs::read(model_dir("tiny_prefixed").join("model.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::copy(model_dir("tiny_prefixed").join("config.json"), dir.path().join("config.json")).unwrap();
    // the file is shorter than its header says
    std::fs::write(&path, &src[..src.len() - 100]).unwrap();
    let err = load_model(&path).err().expect("truncated file is an error").to_string();
    println!("{err}");
    assert!(err.contains("model.safetensors") && err.contains("not a valid safetensors file"), "{err}");
    // the header length is larger than the file
    let mut lying = src.clone();
    lying[..8].copy_from_slice(&(src.len() as u64 * 2).to_le_bytes());
    std::fs::write(&path, &lying).unwrap();
    let err = load_model(&path).err().expect("lying header is an error").to_string();
    println!("{err}");
    assert!(err.contains("not a valid safetensors file"), "{err}");
    // a tensor's shape that disagrees with its byte range: rewrite [32] as [33] for one bias
    let n = u64::from_le_bytes(src[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&src[8..8 + n]).unwrap();
    let mut json: Value = serde_json::from_str(header).unwrap();
    json["transformer.ln_f.bias"]["shape"] = serde_json::json!([33]);
    let mut text = serde_json::to_string(&json).unwrap();
    while text.len() < n {
        text.push(' ');
    }
    assert_eq!(text.len(), n, "the edited header keeps its length");
    let mut bytes = src[..8].to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(&src[8 + n..]);
    std::fs::write(&path, &bytes).unwrap();
    let err = load_model(&path).err().expect("inconsistent header is an error").to_string();
    println!("{err}");
    assert!(err.contains("not a valid safetensors file") && err.contains("ln_f.bias"), "{err}");
    // not a directory of a model
    let empty = tempfile::tempdir().unwrap();
    let err = load_model(empty.path()).err().unwrap().to_string();
    assert!(err.contains("no model.safetensors"), "{err}");
}
