//! Generation with a KV cache must compute what the full forward pass computes: the same logits at
//! every position, hence the same tokens.

mod common;
use gpt2::config::ModelConfig;
use gpt2::cpu::attention::{attention_decode, attention_forward};
use gpt2::cpu::decode::{Decoder, KvCache};
use gpt2::cpu::gpt2::{CpuKernels, Gpt2};
use gpt2::model::init::gpt2_init;
use gpt2::rng::Rng;
use gpt2::sample::{generate, generate_with, sample_token, Sampler};

fn config() -> ModelConfig {
    ModelConfig { max_seq_len: 24, vocab_size: 70, padded_vocab_size: 72, num_layers: 3, num_heads: 3, channels: 24 }
}

#[test]
fn kv_cache_logits_match_the_full_forward_pass() {
    let cfg = config();
    let mut params = gpt2_init(&cfg, 5);
    let mut rng = Rng::new(5);
    params.iter_mut().for_each(|p| *p += 0.05 * rng.normal()); // less uniform than a fresh init
    let tokens = common::random_tokens(&mut rng, 20, cfg.vocab_size);
    // both the readable layers (`sample --kernels reference`) and the fast ones
    for kernels in [CpuKernels::Reference, CpuKernels::Fast] {
        let mut full = Gpt2::new(cfg, params.clone());
        full.kernels = kernels;
        full.forward(&tokens, None, 1, tokens.len());
        let vp = cfg.padded_vocab_size;
        let mut sampler = Sampler::new(cfg, &params);
        sampler.kernels = kernels;
        let mut worst = 0.0f32;
        for (pos, &tok) in tokens.iter().enumerate() {
            sampler.step(tok);
            let expected = &full.logits()[pos * vp..(pos + 1) * vp];
            worst = sampler.logits.iter().zip(expected).fold(worst, |m, (a, b)| m.max((a - b).abs()));
        }
        println!("{kernels:?} layers: largest logit difference, cached vs full: {worst:.2e}");
        // same arithmetic in the same order except the attention sums: f32 rounding only
        assert!(worst < 1e-5, "{kernels:?} layers: the KV-cached logits differ from the full forward by {worst:e}");
    }
}

#[test]
fn generation_gives_the_same_tokens_as_recomputing_everything() {
    let cfg = config();
    let params = gpt2_init(&cfg, 6);
    let prompt = [1u32, 2, 3];
    let (temperature, top_k) = (1.0, 10);
    let cached = generate(cfg, &params, &prompt, 15, temperature, top_k, &mut Rng::new(9), |_| {});
    // the slow way: the full forward over the whole sequence for every new token
    let mut model = Gpt2::new(cfg, params.clone());
    let mut seq = prompt.to_vec();
    let mut rng = Rng::new(9);
    let vp = cfg.padded_vocab_size;
    for _ in 0..15 {
        model.forward(&seq, None, 1, seq.len());
        let last = &model.logits()[(seq.len() - 1) * vp..seq.len() * vp];
        seq.push(sample_token(last, cfg.vocab_size, temperature, top_k, &mut rng));
    }
    assert_eq!(cached, seq[prompt.len()..]);
}

#[test]
fn sampling_respects_top_k_and_greedy() {
    let logits = [0.0, 5.0, 1.0, 4.0, -1.0];
    let mut rng = Rng::new(1);
    assert_eq!(sample_token(&logits, 5, 0.0, 0, &mut rng), 1);
    for _ in 0..200 {
        let t = sample_token(&logits, 5, 1.0, 2, &mut rng);
        assert!(t == 1 || t == 3, "top-2 sampled {t}");
    }
    // padded columns past V are never sampled
    assert!(sample_token(&[0.0, 0.0, 100.0], 2, 1.0, 0, &mut rng) < 2);
}

/// A seeded-random model of the given shape (GPT-2's vocabulary and context), less uniform than a
/// fresh init so that the greedy choices are not near ties.
fn seeded_model(name: &str, seed: u64) -> (ModelConfig, Vec<f32>) {
    let cfg = ModelConfig::from_name(name).expect("a known shape");
    let mut params = gpt2_init(&cfg, seed);
    let mut rng = Rng::new(seed);
    params.iter_mut().for_each(|p| *p += 0.1 * rng.normal());
    (cfg, params)
}

/// The prompts of the greedy-identity test: <|endoftext|> alone, "The quick brown", and a dozen ids.
const GREEDY_PROMPTS: [&[u32]; 3] =
    [&[50256], &[464, 2068, 7586], &[15496, 11, 616, 1438, 318, 1757, 290, 314, 588, 284, 3551, 13]];

/// Greedy continuations (20 tokens) of `GREEDY_PROMPTS`, recorded from the old implementation at
/// commit b95b69d (`Sampler::step`'s own KV-cached forward and `serve/batched.rs`'s, which agreed on
/// every id, with both `--kernels`), before `src/cpu/decode.rs` replaced them.
const GREEDY_IDS: [(&str, [[u32; 20]; 3]); 3] = [
    (
        "tiny",
        [
            [
                47001, 17979, 41577, 293, 47001, 47001, 38478, 46257, 47001, 8512, 180, 180, 31286, 38478, 31286, 1316,
                47001, 27831, 180, 10643,
            ],
            [
                41087, 11677, 9174, 10808, 10808, 8294, 8963, 7015, 20084, 7015, 7015, 32596, 32596, 8963, 7015, 26433,
                9174, 9174, 47001, 47001,
            ],
            [
                2694, 47001, 12444, 3269, 8963, 47001, 49716, 38963, 33013, 47001, 550, 47001, 37751, 14826, 14549,
                43586, 22991, 8963, 27410, 17794,
            ],
        ],
    ),
    (
        "L2H2C32",
        [
            [
                44581, 44581, 44581, 44581, 44581, 44581, 44581, 44581, 44581, 44581, 44581, 44581, 44581, 44581,
                44581, 13172, 13172, 13172, 13172, 13172,
            ],
            [
                32656, 7172, 7172, 7172, 14081, 7172, 15167, 49699, 49699, 49699, 43696, 24337, 24337, 31231, 31231,
                31231, 31231, 31231, 15565, 15565,
            ],
            [
                38909, 7172, 7172, 7172, 43205, 43205, 31231, 13257, 13257, 30326, 7172, 7172, 31231, 31231, 31231,
                31231, 31231, 31231, 31231, 31231,
            ],
        ],
    ),
    (
        "bf16",
        [
            [
                16426, 20626, 36197, 33841, 29363, 36197, 42610, 4025, 4025, 36197, 36197, 36197, 36197, 32229, 32229,
                32229, 1397, 41976, 12776, 12776,
            ],
            [
                36197, 39946, 29363, 36197, 42610, 4025, 4025, 36197, 36197, 36197, 36197, 20858, 4778, 32330, 13335,
                40101, 12776, 12776, 12776, 48736,
            ],
            [
                20626, 41976, 32229, 32229, 32229, 1397, 41976, 12776, 12776, 12776, 48736, 41976, 41976, 43887, 43887,
                36197, 36197, 36197, 39946, 33841,
            ],
        ],
    ),
];

/// The model of a `GREEDY_IDS` entry: a seeded-random tiny (L4H4C128) or L2H2C32 model, or the
/// shipped bf16 Hugging Face fixture (L2H2C16, GPT-2's vocabulary, weights stored in bf16).
fn greedy_model(name: &str) -> (ModelConfig, Vec<f32>) {
    match name {
        "tiny" => seeded_model("tiny", 11),
        "L2H2C32" => seeded_model("L2H2C32", 12),
        _ => {
            let ckpt = gpt2::model::load_model(std::path::Path::new("tests/fixtures/hf/gpt2vocab_bf16"))
                .expect("the shipped bf16 fixture loads");
            (ckpt.config, ckpt.params)
        }
    }
}

#[test]
fn greedy_decoding_gives_the_ids_of_the_old_implementation() {
    for (name, expected) in GREEDY_IDS {
        let (cfg, params) = greedy_model(name);
        // one sequence at a time, as `sample` decodes, with both kernel choices
        for kernels in [CpuKernels::Reference, CpuKernels::Fast] {
            for (prompt, want) in GREEDY_PROMPTS.iter().zip(&expected) {
                let ids = generate_with(kernels, cfg, &params, prompt, 20, 0.0, 0, &mut Rng::new(1), |_| {});
                assert_eq!(ids, want, "{name}, {kernels:?} layers, prompt {prompt:?}");
            }
        }
        // the three together, as serve's batcher decodes: prompts prefilled in one step, then greedy
        let mut decoder = Decoder::new(cfg, &params);
        let mut caches: Vec<KvCache> = GREEDY_PROMPTS.iter().map(|p| KvCache::new(&cfg, p.len() + 20)).collect();
        let mut inputs: Vec<Vec<u32>> = GREEDY_PROMPTS.iter().map(|p| p.to_vec()).collect();
        let mut got = vec![Vec::new(); 3];
        let vp = cfg.padded_vocab_size;
        for _ in 0..20 {
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            let toks: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
            let logits = decoder.forward(&mut refs, &toks);
            for s in 0..3 {
                let next = sample_token(&logits[s * vp..(s + 1) * vp], cfg.vocab_size, 0.0, 0, &mut Rng::new(1));
                got[s].push(next);
                inputs[s] = vec![next];
            }
        }
        for (s, want) in expected.iter().enumerate() {
            assert_eq!(&got[s], want, "{name}, batched, prompt {:?}", GREEDY_PROMPTS[s]);
        }
    }
}

#[test]
fn attention_decode_step_equals_the_rows_of_the_full_causal_forward() {
    // B=2 sequences of T=7 positions, C=12 in NH=3 heads
    let (b, t, c, nh) = (2, 7, 12, 3);
    let mut rng = Rng::new(21);
    let inp: Vec<f32> = (0..b * t * 3 * c).map(|_| rng.normal()).collect();
    let (mut out, mut lse) = (vec![0.0; b * t * c], vec![0.0; b * nh * t]);
    attention_forward(&mut out, &mut lse, &inp, b, t, c, nh);
    for bi in 0..b {
        // the cache fills as decoding goes: keys and values of positions 0..=t1
        let (mut k_cache, mut v_cache) = (vec![0.0; t * c], vec![0.0; t * c]);
        for t1 in 0..t {
            let row = &inp[(bi * t + t1) * 3 * c..][..3 * c];
            k_cache[t1 * c..(t1 + 1) * c].copy_from_slice(&row[c..2 * c]);
            v_cache[t1 * c..(t1 + 1) * c].copy_from_slice(&row[2 * c..]);
            let (mut out_row, mut lse_row) = (vec![0.0; c], vec![0.0; nh]);
            attention_decode(&mut out_row, &mut lse_row, &row[..c], &k_cache, &v_cache, t1 + 1, c, nh);
            // the same arithmetic in the same order: equal to the bit
            assert_eq!(out_row, out[(bi * t + t1) * c..][..c], "out, b={bi} t={t1}");
            let want_lse: Vec<f32> = (0..nh).map(|h| lse[(bi * nh + h) * t + t1]).collect();
            assert_eq!(lse_row, want_lse, "lse, b={bi} t={t1}");
        }
    }
}

#[test]
fn decoding_with_the_reference_layers_gives_the_reference_forward_to_the_bit() {
    // the readable layers compute each row on its own, and `attention_decode` is `attention_forward`'s
    // row: so decoding with them (`--kernels reference`) reproduces the full forward exactly, which
    // it would not if the choice were ignored and the fast layers (other summation orders) ran
    let cfg = config();
    let (params, tokens) = {
        let mut rng = Rng::new(8);
        let mut params = gpt2_init(&cfg, 8);
        params.iter_mut().for_each(|p| *p += 0.05 * rng.normal());
        (params, common::random_tokens(&mut rng, 16, cfg.vocab_size))
    };
    let vp = cfg.padded_vocab_size;
    let mut full = Gpt2::new(cfg, params.clone());
    full.kernels = CpuKernels::Reference;
    full.forward(&tokens, None, 1, tokens.len());
    let mut decoder = Decoder::new(cfg, &params);
    decoder.kernels = CpuKernels::Reference;
    let mut cache = KvCache::new(&cfg, tokens.len());
    // the first half as one prefill chunk, then one token at a time
    let logits = decoder.forward(&mut [&mut cache], &[&tokens[..8]]).to_vec();
    assert_eq!(logits, full.logits()[7 * vp..8 * vp], "after the prefill");
    for pos in 8..tokens.len() {
        let logits = decoder.forward(&mut [&mut cache], &[&tokens[pos..pos + 1]]);
        assert_eq!(logits, &full.logits()[pos * vp..(pos + 1) * vp], "position {pos}");
    }
}
