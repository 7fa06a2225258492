//! Decoding: GPT-2's forward pass for the new tokens only, with a KV cache. The one model that
//! `sample` (`src/sample.rs`, one sequence) and `serve`'s batcher (`src/serve/batcher.rs`, many)
//! both call. Twin: `forward` in `gpt2.rs`, whose layer functions it calls (the same `Layers`
//! table, so `--kernels fast` decodes with the fast matmul and GELU that training uses); only the
//! attention differs, `attention_decode` beside `attention_forward` in `attention.rs`, because a
//! new row attends over the cache instead of over the rows of this call.
//!
//! Generating a token recomputes nothing: each layer's keys and values of the tokens seen so far
//! are kept in the sequence's `KvCache`, so a new token only runs its own row through the model and
//! attends over the cache. `tests/sample.rs` checks that this gives the full forward pass's logits.
//!
//! Several sequences decode at once, each at its own position: their new rows are stacked into one
//! (R, C) input, so each weight is read from memory once for all R rows (a decoding matmul with a
//! single row is bound by reading the weights: batching is what lets a server answer sixteen
//! clients for little more than the price of one). A sequence may also bring several tokens (a
//! chunk of its prompt, "prefill"): they get consecutive positions, their keys and values join the
//! cache first, and each attends over the cache up to its own position.
//!
//! ```text
//!  tokens of S sequences, R rows in all, each at its sequence's next position
//!    |
//!  encoder: wte[token] + wpe[position] ............................ x          (R,C)
//!    +--> block l = 0 .. L-1:
//!    |      ln1 = layernorm(x; ln1w, ln1b) ........................ ln         (R,C)
//!    |      qkv = ln1 @ qkvw^T + qkvb ............................. qkv        (R,3C); k, v -> cache l
//!    |      atty = attention_decode(q; cache l up to each row) .... atty       (R,C)
//!    |      residual2 = x + atty @ attprojw^T + attprojb .......... residual2  (R,C)
//!    |      ln2 = layernorm(residual2; ln2w, ln2b) ................ ln         (R,C)
//!    |      fch_gelu = gelu(ln2 @ fcw^T + fcb) .................... fch_gelu   (R,4C)
//!    |      x = residual2 + fch_gelu @ fcprojw^T + fcprojb ........ x          (R,C)
//!  the last row of each sequence: lnf = layernorm(x; lnfw, lnfb) .. lnf        (S,C)
//!  logits = lnf @ wte^T ........................................... logits     (S,Vp)
//! ```

use super::attention::attention_decode;
use super::kernels::CpuKernels;
use super::layers::Layers;
use crate::config::ModelConfig;
use crate::model::{ParamLayout, ParamViews};
use crate::precision::Precision;
use rayon::prelude::*;

/// One sequence's keys and values for every layer: (L, capacity, C) each, filled up to `len`.
pub struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
    capacity: usize,
    num_layers: usize,
    /// How many positions the cache holds (the position of the next token).
    pub len: usize,
}

impl KvCache {
    /// A cache for up to `capacity` positions (at most the model's context), so a short request
    /// allocates only what it can use.
    pub fn new(config: &ModelConfig, capacity: usize) -> Self {
        let capacity = capacity.min(config.max_seq_len);
        let n = config.num_layers * capacity * config.channels;
        KvCache { k: vec![0.0; n], v: vec![0.0; n], capacity, num_layers: config.num_layers, len: 0 }
    }

    /// Positions the cache can still take.
    pub fn room(&self) -> usize {
        self.capacity - self.len
    }

    /// Forgets the cached sequence.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Layer `l`'s keys and values: (capacity, C) each.
    fn layer(&self, l: usize) -> (&[f32], &[f32]) {
        let size = self.k.len() / self.num_layers;
        (&self.k[l * size..(l + 1) * size], &self.v[l * size..(l + 1) * size])
    }

    /// Writes the key and value (C each) of position `pos` in layer `l`.
    fn store(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let c = k.len();
        let at = (l * self.capacity + pos) * c;
        self.k[at..at + c].copy_from_slice(k);
        self.v[at..at + c].copy_from_slice(v);
    }
}

/// Which sequence an input row belongs to and its position there.
#[derive(Clone, Copy)]
struct Row {
    seq: usize,
    pos: usize,
}

/// Layer `l`'s part of a tensor stacked over `n` layers: (L, ...) -> (...) (`at` in `gpt2.rs`).
fn at(t: &[f32], l: usize, n: usize) -> &[f32] {
    let size = t.len() / n;
    &t[l * size..(l + 1) * size]
}

/// The model's parameters plus activations for the rows of one call, grown to the largest call
/// seen so far (so decoding allocates only while the batch grows).
pub struct Decoder<'a> {
    config: ModelConfig,
    params: ParamViews<'a>,
    /// Reference or fast layers (fast by default), as in training (`Gpt2::kernels`).
    pub kernels: CpuKernels,
    rows: Vec<Row>,
    // the activations of every input row: (R, C), (R, 3C), (R, 4C); (R, NH) for the attention's lse
    x: Vec<f32>,
    ln: Vec<f32>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    qkv: Vec<f32>,
    atty: Vec<f32>,
    att_lse: Vec<f32>,
    attproj: Vec<f32>,
    residual2: Vec<f32>,
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    fcproj: Vec<f32>,
    // the last row of each sequence, after the final layernorm: (S, C); and its logits (S, Vp)
    last: Vec<f32>,
    lnf: Vec<f32>,
    logits: Vec<f32>,
}

impl<'a> Decoder<'a> {
    /// A decoder over `params` (the flat buffer of `ParamLayout::new(&config)`).
    pub fn new(config: ModelConfig, params: &'a [f32]) -> Self {
        let layout = ParamLayout::new(&config);
        assert_eq!(params.len(), layout.total, "parameter buffer does not match the config");
        Decoder {
            config,
            params: ParamViews::new(&layout.sizes(), params),
            kernels: CpuKernels::default(),
            rows: Vec::new(),
            x: Vec::new(),
            ln: Vec::new(),
            mean: Vec::new(),
            rstd: Vec::new(),
            qkv: Vec::new(),
            atty: Vec::new(),
            att_lse: Vec::new(),
            attproj: Vec::new(),
            residual2: Vec::new(),
            fch: Vec::new(),
            fch_gelu: Vec::new(),
            fcproj: Vec::new(),
            last: Vec::new(),
            lnf: Vec::new(),
            logits: Vec::new(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Sizes the activations for `r` rows and `nseq` sequences.
    fn reserve(&mut self, r: usize, nseq: usize) {
        let (c, nh) = (self.config.channels, self.config.num_heads);
        for (buf, width) in [
            (&mut self.x, c),
            (&mut self.ln, c),
            (&mut self.atty, c),
            (&mut self.attproj, c),
            (&mut self.residual2, c),
            (&mut self.fcproj, c),
            (&mut self.qkv, 3 * c),
            (&mut self.fch, 4 * c),
            (&mut self.fch_gelu, 4 * c),
            (&mut self.att_lse, nh),
            (&mut self.mean, 1),
            (&mut self.rstd, 1),
        ] {
            buf.resize(r * width, 0.0);
        }
        self.lnf.resize(nseq * c, 0.0);
        self.logits.resize(nseq * self.config.padded_vocab_size, 0.0);
    }

    /// Feeds `tokens[s]` (one or more) to sequence `s` at the next positions of `caches[s]`, for
    /// every s at once, and returns the logits (S, Vp) that follow the last token of each.
    /// Every token list must be non-empty and fit in its cache (`tokens[s].len() <= caches[s].room()`).
    pub fn forward(&mut self, caches: &mut [&mut KvCache], tokens: &[&[u32]]) -> &[f32] {
        let cfg = self.config;
        let (nl, nh, c, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.padded_vocab_size);
        assert_eq!(caches.len(), tokens.len(), "one KV cache a sequence");
        let nseq = tokens.len();
        // lay the rows out: sequence after sequence, each at its next positions
        self.rows.clear();
        for (s, (cache, toks)) in caches.iter().zip(tokens).enumerate() {
            assert!(!toks.is_empty() && toks.len() <= cache.room(), "sequence {s}: no room in its KV cache");
            assert!(toks.iter().all(|&tok| (tok as usize) < cfg.vocab_size), "sequence {s}: token id out of range");
            self.rows.extend((0..toks.len()).map(|j| Row { seq: s, pos: cache.len + j }));
        }
        let r = self.rows.len();
        self.reserve(r, nseq);

        // the layer functions of these kernels, as training binds them (src/cpu/layers.rs)
        let Layers { encoder_forward, layernorm_forward, matmul_forward, residual_forward, gelu_forward, .. } =
            Layers::new(self.kernels, Precision::Fp32);
        let p = &self.params;

        // token embedding + position embedding, each row at its own position
        // (encoder_forward of one row at position 0 of wpe cut to start at the row's position)
        let flat = tokens.iter().flat_map(|t| t.iter());
        for ((x, row), &tok) in self.x.chunks_exact_mut(c).zip(&self.rows).zip(flat) {
            encoder_forward(x, &[tok], p.wte, &p.wpe[row.pos * c..], 1, 1, c);
        }

        for l in 0..nl {
            let (l_ln1w, l_ln1b) = (at(p.ln1w, l, nl), at(p.ln1b, l, nl));
            let (l_qkvw, l_qkvb) = (at(p.qkvw, l, nl), at(p.qkvb, l, nl));
            let (l_attprojw, l_attprojb) = (at(p.attprojw, l, nl), at(p.attprojb, l, nl));
            let (l_ln2w, l_ln2b) = (at(p.ln2w, l, nl), at(p.ln2b, l, nl));
            let (l_fcw, l_fcb) = (at(p.fcw, l, nl), at(p.fcb, l, nl));
            let (l_fcprojw, l_fcprojb) = (at(p.fcprojw, l, nl), at(p.fcprojb, l, nl));

            // attention: every row's q, k, v in one matmul; k and v join their sequence's cache
            layernorm_forward(&mut self.ln, &mut self.mean, &mut self.rstd, &self.x, l_ln1w, l_ln1b, r, c);
            matmul_forward(&mut self.qkv, &self.ln, l_qkvw, Some(l_qkvb), r, c, 3 * c);
            for (row, qkv) in self.rows.iter().zip(self.qkv.chunks_exact(3 * c)) {
                caches[row.seq].store(l, row.pos, &qkv[c..2 * c], &qkv[2 * c..]);
            }
            // each row attends over its own sequence's cache up to its own position (causal)
            let (rows, qkv, caches) = (&self.rows, &self.qkv, &*caches);
            self.atty.par_chunks_mut(c).zip(self.att_lse.par_chunks_mut(nh)).enumerate().for_each(
                |(i, (atty, lse))| {
                    let row = rows[i];
                    let (k, v) = caches[row.seq].layer(l);
                    attention_decode(atty, lse, &qkv[i * 3 * c..i * 3 * c + c], k, v, row.pos + 1, c, nh);
                },
            );
            matmul_forward(&mut self.attproj, &self.atty, l_attprojw, Some(l_attprojb), r, c, c);
            residual_forward(&mut self.residual2, &self.x, &self.attproj);

            // MLP
            layernorm_forward(&mut self.ln, &mut self.mean, &mut self.rstd, &self.residual2, l_ln2w, l_ln2b, r, c);
            matmul_forward(&mut self.fch, &self.ln, l_fcw, Some(l_fcb), r, c, 4 * c);
            gelu_forward(&mut self.fch_gelu, &self.fch);
            matmul_forward(&mut self.fcproj, &self.fch_gelu, l_fcprojw, Some(l_fcprojb), r, 4 * c, c);
            residual_forward(&mut self.x, &self.residual2, &self.fcproj);
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
        let (mean, rstd) = (&mut self.mean[..nseq], &mut self.rstd[..nseq]);
        layernorm_forward(&mut self.lnf, mean, rstd, &self.last, p.lnfw, p.lnfb, nseq, c);
        matmul_forward(&mut self.logits, &self.lnf, p.wte, None, nseq, c, vp);
        &self.logits
    }
}
