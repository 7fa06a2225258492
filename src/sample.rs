//! Generation: GPT-2 writes one token at a time, each conditioned on all before it.
//!
//! Recomputing the whole sequence for every new token costs O(T^2) layer work; a KV cache keeps
//! each layer's keys and values of the tokens seen so far, so a new token only runs its own row
//! through the model and attends over the cache: that model is `src/cpu/decode.rs`, which `serve`
//! shares. This file picks tokens from its logits. `tests/sample.rs` checks that this gives the
//! same logits and tokens as the full forward pass of `src/cpu/gpt2.rs`.

use crate::config::ModelConfig;
use crate::cpu::decode::{Decoder, KvCache};
use crate::cpu::gpt2::CpuKernels;
use crate::rng::Rng;

/// One sequence being generated: the decoder (`src/cpu/decode.rs`) and the sequence's KV cache.
pub struct Sampler<'a> {
    decoder: Decoder<'a>,
    cache: KvCache,
    /// how many positions the cache holds
    pub len: usize,
    /// the logits (Vp) that follow the last token fed
    pub logits: Vec<f32>,
    /// The matmul and GELU to call: the fast ones by default (the fast matmul spreads a single row
    /// over both cores' output tiles), the readable ones of `src/cpu/` with `sample --kernels reference`.
    pub kernels: CpuKernels,
}

impl<'a> Sampler<'a> {
    pub fn new(config: ModelConfig, params: &'a [f32]) -> Self {
        Sampler {
            decoder: Decoder::new(config, params),
            cache: KvCache::new(&config, config.max_seq_len),
            len: 0,
            logits: vec![0.0; config.padded_vocab_size],
            kernels: CpuKernels::default(),
        }
    }

    /// Forgets the cached sequence.
    pub fn reset(&mut self) {
        self.cache.reset();
        self.len = 0;
    }

    /// Feeds one token at the next position and leaves the next token's logits (Vp) in `self.logits`.
    /// The cache must have room (`len < maxT`).
    pub fn step(&mut self, token: u32) {
        let maxt = self.decoder.config().max_seq_len;
        assert!(self.cache.room() > 0, "the KV cache is full ({maxt} positions)");
        self.decoder.kernels = self.kernels;
        let logits = self.decoder.forward(&mut [&mut self.cache], &[&[token]]);
        self.logits.copy_from_slice(logits);
        self.len = self.cache.len;
    }
}

/// Picks the next token from logits over the real vocabulary `v`: greedy at temperature 0, else
/// softmax(logits / temperature) restricted to the `top_k` most likely (0 = all).
pub fn sample_token(logits: &[f32], v: usize, temperature: f32, top_k: usize, rng: &mut Rng) -> u32 {
    let logits = &logits[..v];
    let argmax = || logits.iter().enumerate().fold(0, |best, (i, &x)| if x > logits[best] { i } else { best });
    if temperature <= 0.0 || top_k == 1 {
        return argmax() as u32;
    }
    // the threshold: the k-th largest logit (all of them when top_k is 0 or >= V)
    let threshold = if top_k == 0 || top_k >= v {
        f32::NEG_INFINITY
    } else {
        let mut sorted = logits.to_vec();
        sorted.select_nth_unstable_by(top_k - 1, |a, b| b.total_cmp(a));
        sorted[top_k - 1]
    };
    let maxval = logits[argmax()];
    let weight = |x: f32| if x >= threshold { ((x - maxval) / temperature).exp() } else { 0.0 };
    let total: f32 = logits.iter().map(|&x| weight(x)).sum();
    let mut r = rng.next_f32() * total;
    for (i, &x) in logits.iter().enumerate() {
        r -= weight(x);
        if r <= 0.0 && weight(x) > 0.0 {
            return i as u32;
        }
    }
    argmax() as u32
}

/// Generates up to `n` tokens after `prompt` (which must not be empty), calling `on_token` with
/// each new one as it comes. A prompt longer than the context keeps its end; generation stops
/// early when the context is full (both say so on stderr).
pub fn generate(
    config: ModelConfig,
    params: &[f32],
    prompt: &[u32],
    n: usize,
    temperature: f32,
    top_k: usize,
    rng: &mut Rng,
    on_token: impl FnMut(u32),
) -> Vec<u32> {
    generate_with(CpuKernels::default(), config, params, prompt, n, temperature, top_k, rng, on_token)
}

/// `generate` with the layers to use: `CpuKernels::Reference` steps through the readable ones.
#[allow(clippy::too_many_arguments)]
pub fn generate_with(
    kernels: CpuKernels,
    config: ModelConfig,
    params: &[f32],
    prompt: &[u32],
    n: usize,
    temperature: f32,
    top_k: usize,
    rng: &mut Rng,
    mut on_token: impl FnMut(u32),
) -> Vec<u32> {
    assert!(!prompt.is_empty(), "generation needs at least one prompt token");
    let mut sampler = Sampler::new(config, params);
    sampler.kernels = kernels;
    // the prompt may be longer than the context: keep its end
    if prompt.len() > config.max_seq_len {
        eprintln!(
            "(the prompt's {} tokens are more than the model's context of {}: using the last {0})",
            prompt.len(),
            config.max_seq_len
        );
    }
    let prompt = &prompt[prompt.len().saturating_sub(config.max_seq_len)..];
    for &tok in prompt {
        sampler.step(tok);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let next = sample_token(&sampler.logits, config.vocab_size, temperature, top_k, rng);
        out.push(next);
        on_token(next);
        if sampler.len == config.max_seq_len && out.len() < n {
            eprintln!("\n(stopped after {} tokens: the model's context of {} is full)", out.len(), config.max_seq_len);
            break;
        }
        sampler.step(next);
    }
    out
}
