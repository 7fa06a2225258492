//! The forward pass for many sequences at once, each with its own KV cache: what lets the server
//! answer sixteen clients for little more than the price of one. Twin: `src/sample.rs` (`Sampler`),
//! which does the same for one sequence and one token; `tests/serve.rs` checks that the two give the
//! same logits.
//!
//! Why batching pays on a CPU: a decoding step feeds one new token per sequence, so every matmul
//! has a single input row and is bound by reading the weights from memory (each weight is used once
//! per row). Stack the new rows of B sequences into one (B, C) input and the same weights are read
//! once for all B rows: `matmul_forward` in `src/cpu/fast/matmul/` turns B matrix-vector products
//! into one matrix-matrix product. Attention cannot be shared (each row attends over its own
//! sequence's cache), but it is a small part of the work at these lengths.
//!
//! A step may also carry several tokens of one sequence (a chunk of its prompt: "prefill"): they
//! get consecutive positions, their keys and values join the cache first, and each attends over
//! the cache up to its own position, so a prompt of N tokens costs one step instead of N.

use crate::config::ModelConfig;
use crate::cpu::fast::matmul::matmul_forward;
use crate::cpu::gelu::gelu_forward;
use crate::cpu::layernorm::layernorm_forward;
use crate::model::{ParamLayout, ParamViews};
use rayon::prelude::*;

/// One sequence's keys and values for every layer: (L, capacity, C) each, filled up to `len`.
pub struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
    capacity: usize,
    /// How many positions the cache holds (the position of the next token).
    pub len: usize,
}

impl KvCache {
    /// A cache for up to `capacity` positions (at most the model's context), so a short request
    /// allocates only what it can use.
    pub fn new(config: &ModelConfig, capacity: usize) -> Self {
        let capacity = capacity.min(config.max_seq_len);
        let n = config.num_layers * capacity * config.channels;
        KvCache { k: vec![0.0; n], v: vec![0.0; n], capacity, len: 0 }
    }

    /// Positions the cache can still take.
    pub fn room(&self) -> usize {
        self.capacity - self.len
    }
}

/// Which sequence an input row belongs to and its position there.
#[derive(Clone, Copy)]
struct Row {
    seq: usize,
    pos: usize,
}

/// The model's parameters plus scratch buffers sized for the largest batch seen so far.
pub struct BatchedModel<'a> {
    config: ModelConfig,
    params: ParamViews<'a>,
    rows: Vec<Row>,
    // activations of every input row: (R, C), (R, 3C), (R, 4C)
    x: Vec<f32>,
    ln: Vec<f32>,
    qkv: Vec<f32>,
    atty: Vec<f32>,
    proj: Vec<f32>,
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    // the last row of each sequence, after the final layernorm: (S, C); and its logits (S, Vp)
    last: Vec<f32>,
    last_ln: Vec<f32>,
    logits: Vec<f32>,
}

impl<'a> BatchedModel<'a> {
    pub fn new(config: ModelConfig, params: &'a [f32]) -> Self {
        let layout = ParamLayout::new(&config);
        BatchedModel {
            config,
            params: ParamViews::new(&layout.sizes(), params),
            rows: Vec::new(),
            x: Vec::new(),
            ln: Vec::new(),
            qkv: Vec::new(),
            atty: Vec::new(),
            proj: Vec::new(),
            fch: Vec::new(),
            fch_gelu: Vec::new(),
            mean: Vec::new(),
            rstd: Vec::new(),
            last: Vec::new(),
            last_ln: Vec::new(),
            logits: Vec::new(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Feeds `tokens[s]` (one or more) to sequence `s` at the next positions of `caches[s]`, for
    /// every s at once, and returns the logits (S, Vp) that follow the last token of each.
    /// Every token list must be non-empty and fit in its cache (`tokens[s].len() <= caches[s].room()`).
    pub fn forward(&mut self, caches: &mut [&mut KvCache], tokens: &[&[u32]]) -> &[f32] {
        let cfg = self.config;
        let (nl, nh, c, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.padded_vocab_size);
        let hs = c / nh;
        assert_eq!(caches.len(), tokens.len());
        let nseq = tokens.len();
        // lay the rows out: sequence after sequence, each at its next positions
        self.rows.clear();
        for (s, (cache, toks)) in caches.iter().zip(tokens).enumerate() {
            assert!(!toks.is_empty() && toks.len() <= cache.room(), "sequence {s}: no room in its KV cache");
            self.rows.extend((0..toks.len()).map(|j| Row { seq: s, pos: cache.len + j }));
        }
        let r = self.rows.len();
        for (buf, width) in [(&mut self.x, c), (&mut self.ln, c), (&mut self.atty, c), (&mut self.proj, c)] {
            buf.resize(r * width, 0.0);
        }
        self.qkv.resize(r * 3 * c, 0.0);
        self.fch.resize(r * 4 * c, 0.0);
        self.fch_gelu.resize(r * 4 * c, 0.0);
        self.mean.resize(r.max(nseq), 0.0);
        self.rstd.resize(r.max(nseq), 0.0);
        let p = &self.params;

        // embedding of each token at its position
        let flat: Vec<u32> = tokens.iter().flat_map(|t| t.iter().copied()).collect();
        for (i, (row, &tok)) in self.rows.iter().zip(&flat).enumerate() {
            let (te, pe) = (&p.wte[tok as usize * c..][..c], &p.wpe[row.pos * c..][..c]);
            for ((x, a), b) in self.x[i * c..(i + 1) * c].iter_mut().zip(te).zip(pe) {
                *x = a + b;
            }
        }
        let (mean, rstd) = (&mut self.mean[..r], &mut self.rstd[..r]);
        for l in 0..nl {
            let w = |t: &'a [f32]| -> &'a [f32] { &t[l * t.len() / nl..(l + 1) * t.len() / nl] };
            // attention: every row's q, k, v in one matmul; k and v join their sequence's cache
            layernorm_forward(&mut self.ln, mean, rstd, &self.x, w(p.ln1w), w(p.ln1b), r, c);
            matmul_forward(&mut self.qkv, &self.ln, w(p.qkvw), Some(w(p.qkvb)), r, c, 3 * c);
            for (i, row) in self.rows.iter().enumerate() {
                let cache = &mut caches[row.seq];
                let at = (l * cache.capacity + row.pos) * c;
                let qkv = &self.qkv[i * 3 * c..(i + 1) * 3 * c];
                cache.k[at..at + c].copy_from_slice(&qkv[c..2 * c]);
                cache.v[at..at + c].copy_from_slice(&qkv[2 * c..]);
            }
            // each row attends over its own sequence's cache up to its own position (causal)
            let (rows, qkv, caches_ro) = (&self.rows, &self.qkv, &*caches);
            self.atty.par_chunks_mut(c).enumerate().for_each(|(i, out_row)| {
                let row = rows[i];
                let cache = &caches_ro[row.seq];
                let base = l * cache.capacity * c;
                let mut scores = vec![0.0f32; row.pos + 1];
                let scale = 1.0 / (hs as f32).sqrt();
                for h in 0..nh {
                    let q = &qkv[i * 3 * c + h * hs..][..hs];
                    // scores against every cached key, then softmax
                    let mut maxval = f32::NEG_INFINITY;
                    for (t2, s) in scores.iter_mut().enumerate() {
                        let k = &cache.k[base + t2 * c + h * hs..][..hs];
                        *s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                        maxval = maxval.max(*s);
                    }
                    let mut sum = 0.0;
                    for s in scores.iter_mut() {
                        *s = (*s - maxval).exp();
                        sum += *s;
                    }
                    // weighted sum of the cached values
                    let out = &mut out_row[h * hs..(h + 1) * hs];
                    out.fill(0.0);
                    for (t2, s) in scores.iter().enumerate() {
                        let a = s / sum;
                        let v = &cache.v[base + t2 * c + h * hs..][..hs];
                        for (o, vi) in out.iter_mut().zip(v) {
                            *o += a * vi;
                        }
                    }
                }
            });
            matmul_forward(&mut self.proj, &self.atty, w(p.attprojw), Some(w(p.attprojb)), r, c, c);
            add_residual(&mut self.x, &self.proj);
            // MLP
            layernorm_forward(&mut self.ln, mean, rstd, &self.x, w(p.ln2w), w(p.ln2b), r, c);
            matmul_forward(&mut self.fch, &self.ln, w(p.fcw), Some(w(p.fcb)), r, c, 4 * c);
            gelu_forward(&mut self.fch_gelu, &self.fch);
            matmul_forward(&mut self.proj, &self.fch_gelu, w(p.fcprojw), Some(w(p.fcprojb)), r, 4 * c, c);
            add_residual(&mut self.x, &self.proj);
        }
        for (cache, toks) in caches.iter_mut().zip(tokens) {
            cache.len += toks.len();
        }

        // only the last row of each sequence needs logits: the LM head is the biggest matmul
        self.last.clear();
        let mut end = 0;
        for toks in tokens {
            end += toks.len();
            self.last.extend_from_slice(&self.x[(end - 1) * c..end * c]);
        }
        self.last_ln.resize(nseq * c, 0.0);
        self.logits.resize(nseq * vp, 0.0);
        let (mean, rstd) = (&mut self.mean[..nseq], &mut self.rstd[..nseq]);
        layernorm_forward(&mut self.last_ln, mean, rstd, &self.last, p.lnfw, p.lnfb, nseq, c);
        matmul_forward(&mut self.logits, &self.last_ln, p.wte, None, nseq, c, vp);
        &self.logits
    }
}

/// The residual connection in place: x += branch.
fn add_residual(x: &mut [f32], branch: &[f32]) {
    for (xi, b) in x.iter_mut().zip(branch) {
        *xi += b;
    }
}
