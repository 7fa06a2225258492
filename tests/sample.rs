//! Generation with a KV cache must compute what the full forward pass computes: the same logits at
//! every position, hence the same tokens.

mod common;
use gpt2::config::ModelConfig;
use gpt2::cpu::gpt2::{CpuKernels, Gpt2};
use gpt2::model::init::gpt2_init;
use gpt2::rng::Rng;
use gpt2::sample::{generate, sample_token, Sampler};

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
