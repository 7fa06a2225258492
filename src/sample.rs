//! Generation: GPT-2 writes one token at a time, each conditioned on all before it.
//!
//! Recomputing the whole sequence for every new token costs O(T^2) layer work; a KV cache keeps
//! each layer's keys and values of the tokens seen so far, so a new token only runs its own row
//! through the model and attends over the cache. `tests/sample.rs` checks that this gives the same
//! logits and tokens as the full forward pass of `src/cpu/gpt2.rs`.

use crate::config::ModelConfig;
use crate::cpu::gpt2::CpuKernels;
use crate::cpu::layernorm::layernorm_forward;
use crate::model::{ParamLayout, ParamViews};
use crate::rng::Rng;

/// The model plus its KV cache and per-token scratch buffers, allocated once.
pub struct Sampler<'a> {
    config: ModelConfig,
    params: ParamViews<'a>,
    /// keys and values of every layer and position so far: (L, maxT, C) each
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    /// how many positions the cache holds
    pub len: usize,
    // one row of each activation
    x: Vec<f32>,
    ln: Vec<f32>,
    qkv: Vec<f32>,
    atty: Vec<f32>,
    proj: Vec<f32>,
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    scores: Vec<f32>,
    pub logits: Vec<f32>,
    /// The matmul and GELU to call: the fast ones by default (the fast matmul spreads a single row
    /// over both cores' output tiles), the readable ones of `src/cpu/` with `sample --kernels reference`.
    pub kernels: CpuKernels,
}

impl<'a> Sampler<'a> {
    pub fn new(config: ModelConfig, params: &'a [f32]) -> Self {
        let layout = ParamLayout::new(&config);
        let (l, c, maxt) = (config.num_layers, config.channels, config.max_seq_len);
        Sampler {
            config,
            params: ParamViews::new(&layout.sizes(), params),
            k_cache: vec![0.0; l * maxt * c],
            v_cache: vec![0.0; l * maxt * c],
            len: 0,
            x: vec![0.0; c],
            ln: vec![0.0; c],
            qkv: vec![0.0; 3 * c],
            atty: vec![0.0; c],
            proj: vec![0.0; c],
            fch: vec![0.0; 4 * c],
            fch_gelu: vec![0.0; 4 * c],
            scores: vec![0.0; maxt],
            logits: vec![0.0; config.padded_vocab_size],
            kernels: CpuKernels::default(),
        }
    }

    /// Forgets the cached sequence.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Feeds one token at the next position and leaves the next token's logits (Vp) in `self.logits`.
    /// The cache must have room (`len < maxT`).
    pub fn step(&mut self, token: u32) {
        let cfg = self.config;
        let (nl, nh, c, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.padded_vocab_size);
        let (hs, maxt, pos) = (c / nh, cfg.max_seq_len, self.len);
        assert!(pos < maxt, "the KV cache is full ({maxt} positions)");
        let p = &self.params;
        let (mut mean, mut rstd) = ([0.0f32], [0.0f32]);
        let (matmul_forward, _) = self.kernels.matmul();
        let (gelu_forward, _) = self.kernels.gelu();

        // embedding of this token at this position
        let tok = token as usize;
        for i in 0..c {
            self.x[i] = p.wte[tok * c + i] + p.wpe[pos * c + i];
        }
        for l in 0..nl {
            let w = |t: &'a [f32]| -> &'a [f32] { &t[l * t.len() / nl..(l + 1) * t.len() / nl] };
            // attention: the new token's q, k, v; k and v join the cache
            layernorm_forward(&mut self.ln, &mut mean, &mut rstd, &self.x, w(p.ln1w), w(p.ln1b), 1, c);
            matmul_forward(&mut self.qkv, &self.ln, w(p.qkvw), Some(w(p.qkvb)), 1, c, 3 * c);
            let cache_row = (l * maxt + pos) * c;
            self.k_cache[cache_row..cache_row + c].copy_from_slice(&self.qkv[c..2 * c]);
            self.v_cache[cache_row..cache_row + c].copy_from_slice(&self.qkv[2 * c..]);
            for h in 0..nh {
                let q = &self.qkv[h * hs..(h + 1) * hs];
                let scale = 1.0 / (hs as f32).sqrt();
                // scores against every cached key, then softmax
                let mut maxval = f32::NEG_INFINITY;
                for t2 in 0..=pos {
                    let k = &self.k_cache[(l * maxt + t2) * c + h * hs..][..hs];
                    let s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                    self.scores[t2] = s;
                    maxval = maxval.max(s);
                }
                let mut sum = 0.0;
                for s in &mut self.scores[..=pos] {
                    *s = (*s - maxval).exp();
                    sum += *s;
                }
                // weighted sum of the cached values
                let out = &mut self.atty[h * hs..(h + 1) * hs];
                out.fill(0.0);
                for t2 in 0..=pos {
                    let a = self.scores[t2] / sum;
                    let v = &self.v_cache[(l * maxt + t2) * c + h * hs..][..hs];
                    for (o, vi) in out.iter_mut().zip(v) {
                        *o += a * vi;
                    }
                }
            }
            matmul_forward(&mut self.proj, &self.atty, w(p.attprojw), Some(w(p.attprojb)), 1, c, c);
            add_residual(&mut self.x, &self.proj);
            // MLP
            layernorm_forward(&mut self.ln, &mut mean, &mut rstd, &self.x, w(p.ln2w), w(p.ln2b), 1, c);
            matmul_forward(&mut self.fch, &self.ln, w(p.fcw), Some(w(p.fcb)), 1, c, 4 * c);
            gelu_forward(&mut self.fch_gelu, &self.fch);
            matmul_forward(&mut self.proj, &self.fch_gelu, w(p.fcprojw), Some(w(p.fcprojb)), 1, 4 * c, c);
            add_residual(&mut self.x, &self.proj);
        }
        layernorm_forward(&mut self.ln, &mut mean, &mut rstd, &self.x, p.lnfw, p.lnfb, 1, c);
        matmul_forward(&mut self.logits, &self.ln, p.wte, None, 1, c, vp);
        self.len += 1;
    }
}

/// The residual connection in place: x += branch (`residual_forward` with out = inp1).
fn add_residual(x: &mut [f32], branch: &[f32]) {
    for (xi, b) in x.iter_mut().zip(branch) {
        *xi += b;
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
