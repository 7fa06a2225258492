//! GPT-2 on the CPU: the layers of this folder composed into the whole model, forward and backward.
//! Twin: `src/cuda/gpt2.rs`, which makes the same calls to the kernels in `kernels/`: between the
//! `[twin: ...]` and `[end twin]` comments the two files read the same, line for line, once device
//! calls are written as plain calls (`tests/twins.rs` checks it).
//!
//! Read `forward` top to bottom: it is the model. Parameters, their gradients, the activations and
//! the activation gradients each live in one flat buffer (see `src/model/mod.rs`), allocated once; a
//! step allocates nothing. The activation gradients are one block's worth, reused by every block as
//! the backward walks down them, and the logits' gradient is written over the logits
//! (`src/memory.rs` counts what this saves).
//!
//! ```text
//!  inputs (B,T) token ids
//!    |
//!  encoder: wte[token] + wpe[position] ............................ encoded    (B,T,C)
//!    |
//!    +--> block l = 0 .. L-1, each reading the residual stream x (B,T,C):
//!    |      ln1 = layernorm(x; ln1w, ln1b) ........................ ln1        (B,T,C), ln1_mean, ln1_rstd (B,T)
//!    |      qkv = ln1 @ qkvw^T + qkvb ............................. qkv        (B,T,3C)
//!    |      atty = causal self-attention(qkv) ..................... atty (B,T,C), att_lse (B,NH,T)
//!    |      attproj = atty @ attprojw^T + attprojb ................ attproj    (B,T,C)
//!    |      x2 = x + attproj ...................................... residual2  (B,T,C)
//!    |      ln2 = layernorm(x2; ln2w, ln2b) ....................... ln2        (B,T,C), ln2_mean, ln2_rstd (B,T)
//!    |      fch = ln2 @ fcw^T + fcb ............................... fch        (B,T,4C)
//!    |      fch_gelu = gelu(fch) .................................. fch_gelu   (B,T,4C)
//!    |      fcproj = fch_gelu @ fcprojw^T + fcprojb ............... fcproj     (B,T,C)
//!    |      x3 = x2 + fcproj ...................................... residual3  (B,T,C) = next block's x
//!    |
//!  lnf = layernorm(x3 of the last block; lnfw, lnfb) .............. lnf        (B,T,C), lnf_mean, lnf_rstd (B,T)
//!  logits = lnf @ wte^T (the LM head is the token embedding) ...... logits     (B,T,Vp)
//!  losses = logsumexp(logits[..V]) - logits[target] ............... losses, logits_lse (B,T); loss = their mean
//! ```
//!
//! The names are llm.c's, kept so its readers feel at home: `ln1`/`ln2`/`lnf` the outputs of the
//! two layernorms of a block and the final one, with the `_mean`/`_rstd` (1/standard deviation) the
//! backward pass needs; `qkv` the queries, keys and values side by side; `att_lse` the attention's
//! one number per row, the log-sum-exp of its scores, from which the backward recomputes the weights
//! (no (T, T) matrix is kept: see `attention.rs`); `atty` the attention's output (the weights times the
//! values, "y" in the paper); `attproj`/`fcproj` the two projections back onto the residual stream;
//! `residual2` the stream after the attention half of a block, `residual3` after the MLP half (the
//! embedding is residual 1); `fch` the MLP's hidden layer ("fc hidden"), `fch_gelu` it after GELU.
//! A leading `l_` marks one block's slice of a tensor stacked over the L blocks, `d` a gradient
//! (`dl_ln1`: the gradient of block l's ln1), `p`/`gp` parameters and their gradients, `a`/`ga`
//! activations and their gradients.

pub use super::kernels::CpuKernels;
use super::layers::Layers;
use crate::config::ModelConfig;
use crate::model::{
    activation_sizes, gradient_sizes, ActivationViews, GradientViews, ParamLayout, ParamViews, ParamViewsMut,
    ACTIVATION_NAMES,
};
use crate::precision::{round_bf16, Precision};

/// Layer `l`'s part of a tensor stacked over `n` layers: (L, ...) -> (...).
fn at(t: &[f32], l: usize, n: usize) -> &[f32] {
    let size = t.len() / n;
    &t[l * size..(l + 1) * size]
}

/// Mutable version of `at`.
fn at_mut(t: &mut [f32], l: usize, n: usize) -> &mut [f32] {
    let size = t.len() / n;
    &mut t[l * size..(l + 1) * size]
}

/// Block `l`'s input and output in the residual stream: the input is the embedding (`encoded`) for
/// the first block and block l-1's slice of `residual3` after that; the output is block l's slice.
fn block_residuals<'a>(
    encoded: &'a mut [f32],
    residual3: &'a mut [f32],
    l: usize,
    nl: usize,
) -> (&'a mut [f32], &'a mut [f32]) {
    let size = residual3.len() / nl;
    let (done, rest) = residual3.split_at_mut(l * size);
    let input = if l == 0 { encoded } else { &mut done[(l - 1) * size..] };
    (input, &mut rest[..size])
}

/// Sets a gradient buffer to zero.
fn zero(t: &mut [f32]) {
    t.fill(0.0);
}

pub struct Gpt2 {
    pub config: ModelConfig,
    /// Reference or fast layers (fast by default).
    pub kernels: CpuKernels,
    pub layout: ParamLayout,
    /// fp32 or bf16 mixed precision (`src/precision.rs`); set it with `set_precision`.
    precision: Precision,
    /// All parameters, llm.c's order (see `ParamLayout`): in bf16 mode, the fp32 master weights.
    /// After changing them directly in bf16 mode, call `refresh_bf16_weights`.
    pub params: Vec<f32>,
    /// In bf16 mode, the bf16 copy of `params` that the layers read (bf16 numbers in f32 slots),
    /// refreshed from the master after every update; empty in fp32 mode.
    params_bf16: Vec<f32>,
    /// Their gradients, same layout; backward adds into them, `zero_grad` clears them.
    pub grads: Vec<f32>,
    /// The activations of the last forward pass (`activation_sizes` layout) and the activation
    /// gradients (`gradient_sizes` layout: the head's and one block's).
    acts: Vec<f32>,
    grad_acts: Vec<f32>,
    /// The batch shape of the last forward pass.
    b: usize,
    t: usize,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    has_targets: bool,
    /// Whether a backward pass has run since the last forward: it wrote the logits' gradient over
    /// the logits, so another backward would start from the wrong numbers.
    logits_hold_gradient: bool,
}

impl Gpt2 {
    /// A model with the given parameters (the flat buffer of `ParamLayout::new(&config)`).
    pub fn new(config: ModelConfig, params: Vec<f32>) -> Self {
        let layout = ParamLayout::new(&config);
        assert_eq!(params.len(), layout.total, "parameter buffer does not match the config");
        let grads = vec![0.0; layout.total];
        Gpt2 {
            config,
            kernels: CpuKernels::default(),
            precision: Precision::Fp32,
            layout,
            params,
            params_bf16: Vec::new(),
            grads,
            acts: Vec::new(),
            grad_acts: Vec::new(),
            b: 0,
            t: 0,
            inputs: Vec::new(),
            targets: Vec::new(),
            has_targets: false,
            logits_hold_gradient: false,
        }
    }

    /// The precision the layers compute in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Switches between fp32 and bf16 mixed precision (`src/precision.rs`). The fp32 parameters stay
    /// the master copy either way; bf16 mode derives its bf16 copy from them here.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.refresh_bf16_weights();
    }

    /// In bf16 mode, rounds the fp32 master weights into the bf16 copy the layers read (after every
    /// update, and after anything else writes `params`); in fp32 mode, frees that copy.
    pub fn refresh_bf16_weights(&mut self) {
        match self.precision {
            Precision::Fp32 => self.params_bf16 = Vec::new(),
            Precision::Bf16 => {
                use rayon::prelude::*;
                self.params_bf16.resize(self.params.len(), 0.0);
                self.params_bf16.par_iter_mut().zip(self.params.par_iter()).for_each(|(w, &p)| *w = round_bf16(p));
            }
        }
    }

    /// The weights the layers read: the fp32 parameters, or in bf16 mode their bf16 copy.
    pub fn weights(&self) -> &[f32] {
        match self.precision {
            Precision::Fp32 => &self.params,
            Precision::Bf16 => &self.params_bf16,
        }
    }

    /// Makes the activation buffers large enough for (B, T). Allocates only when the shape grows,
    /// so in training this happens at the first step and never again.
    fn reserve(&mut self, b: usize, t: usize) {
        let needed: usize = activation_sizes(&self.config, b, t).iter().sum();
        if self.acts.len() < needed {
            self.acts = vec![0.0; needed];
        }
        let needed: usize = gradient_sizes(&self.config, b, t).iter().sum();
        if self.grad_acts.len() < needed {
            self.grad_acts = vec![0.0; needed];
        }
        if self.inputs.len() < b * t {
            self.inputs = vec![0; b * t];
            self.targets = vec![0; b * t];
        }
    }

    /// The forward pass over tokens `inputs` (B, T). With `targets` (B, T) it returns the mean
    /// cross-entropy loss, which `backward` then differentiates.
    pub fn forward(&mut self, inputs: &[u32], targets: Option<&[u32]>, b: usize, t: usize) -> Option<f32> {
        let cfg = self.config;
        let (nl, nh, c, v, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size);
        assert!(t <= cfg.max_seq_len, "sequence length {t} exceeds the model's maximum {}", cfg.max_seq_len);
        assert_eq!(inputs.len(), b * t);
        assert!(inputs.iter().all(|&tok| (tok as usize) < v), "input token id out of range");
        self.reserve(b, t);
        let bt = b * t;
        self.b = b;
        self.t = t;
        self.inputs[..bt].copy_from_slice(inputs);
        self.has_targets = targets.is_some();
        self.logits_hold_gradient = false;
        if let Some(targets) = targets {
            assert!(targets.iter().all(|&tok| (tok as usize) < v), "target token id out of range");
            self.targets[..bt].copy_from_slice(targets);
        }

        // the layer functions for these kernels at this precision (src/cpu/layers.rs)
        let Layers {
            encoder_forward,
            layernorm_forward,
            matmul_forward,
            attention_forward,
            residual_forward,
            gelu_forward,
            crossentropy_forward,
            ..
        } = Layers::new(self.kernels, self.precision);
        let weights = if self.precision == Precision::Bf16 { &self.params_bf16 } else { &self.params };
        let p = ParamViews::new(&self.layout.sizes(), weights);
        let a = ActivationViews::new(&activation_sizes(&cfg, b, t), &mut self.acts);
        // the MLP's matmul and its GELU as one call, as the GPU makes them (cuBLASLt fuses the two)
        let matmul_gelu_forward = |fch: &mut [f32],
                                   fch_gelu: &mut [f32],
                                   inp: &[f32],
                                   weight: &[f32],
                                   bias: Option<&[f32]>,
                                   bt: usize,
                                   c: usize,
                                   oc: usize| {
            matmul_forward(fch, inp, weight, bias, bt, c, oc);
            gelu_forward(fch_gelu, fch);
        };

        // [twin: forward]
        // token embedding + position embedding
        // encoded (B,T,C) <- token ids (B,T), wte (Vp,C), wpe (maxT,C)
        encoder_forward(a.encoded, inputs, p.wte, p.wpe, b, t, c);

        for l in 0..nl {
            // the residual stream entering block l (the embedding, or block l-1's output), and block l's output
            let (residual, l_residual3) = block_residuals(&mut *a.encoded, &mut *a.residual3, l, nl);

            // this block's parameters
            let (l_ln1w, l_ln1b) = (at(p.ln1w, l, nl), at(p.ln1b, l, nl));
            let (l_qkvw, l_qkvb) = (at(p.qkvw, l, nl), at(p.qkvb, l, nl));
            let (l_attprojw, l_attprojb) = (at(p.attprojw, l, nl), at(p.attprojb, l, nl));
            let (l_ln2w, l_ln2b) = (at(p.ln2w, l, nl), at(p.ln2b, l, nl));
            let (l_fcw, l_fcb) = (at(p.fcw, l, nl), at(p.fcb, l, nl));
            let (l_fcprojw, l_fcprojb) = (at(p.fcprojw, l, nl), at(p.fcprojb, l, nl));

            // this block's slices of the activations
            let (l_ln1, l_ln1_mean, l_ln1_rstd) =
                (at_mut(a.ln1, l, nl), at_mut(a.ln1_mean, l, nl), at_mut(a.ln1_rstd, l, nl));
            let (l_qkv, l_atty) = (at_mut(a.qkv, l, nl), at_mut(a.atty, l, nl));
            let l_att_lse = at_mut(a.att_lse, l, nl);
            let (l_attproj, l_residual2) = (&mut *a.attproj, at_mut(a.residual2, l, nl));
            let (l_ln2, l_ln2_mean, l_ln2_rstd) =
                (at_mut(a.ln2, l, nl), at_mut(a.ln2_mean, l, nl), at_mut(a.ln2_rstd, l, nl));
            let (l_fch, l_fch_gelu, l_fcproj) = (at_mut(a.fch, l, nl), at_mut(a.fch_gelu, l, nl), &mut *a.fcproj);

            // attention: layernorm -> qkv projection -> causal self-attention -> output projection -> residual
            // ln1 (B,T,C), ln1_mean and ln1_rstd (B,T) <- residual (B,T,C)
            layernorm_forward(l_ln1, l_ln1_mean, l_ln1_rstd, residual, l_ln1w, l_ln1b, bt, c);
            // qkv (B,T,3C) <- ln1 (B,T,C) @ qkvw^T (3C,C) + qkvb (3C)
            matmul_forward(l_qkv, l_ln1, l_qkvw, Some(l_qkvb), bt, c, 3 * c);
            // atty (B,T,C), att_lse (B,NH,T) <- qkv (B,T,3C)
            attention_forward(l_atty, l_att_lse, l_qkv, b, t, c, nh);
            // attproj (B,T,C) <- atty (B,T,C) @ attprojw^T (C,C) + attprojb (C)
            matmul_forward(l_attproj, l_atty, l_attprojw, Some(l_attprojb), bt, c, c);
            // residual2 (B,T,C) = residual + attproj
            residual_forward(l_residual2, residual, l_attproj);

            // MLP: layernorm -> fc (C -> 4C) -> GELU -> projection (4C -> C) -> residual
            // ln2 (B,T,C), ln2_mean and ln2_rstd (B,T) <- residual2 (B,T,C)
            layernorm_forward(l_ln2, l_ln2_mean, l_ln2_rstd, l_residual2, l_ln2w, l_ln2b, bt, c);
            // fch (B,T,4C) <- ln2 (B,T,C) @ fcw^T (4C,C) + fcb (4C), then fch_gelu (B,T,4C) = gelu(fch)
            // (one call: cuBLASLt fuses the GELU into the matmul)
            matmul_gelu_forward(l_fch, l_fch_gelu, l_ln2, l_fcw, Some(l_fcb), bt, c, 4 * c);
            // fcproj (B,T,C) <- fch_gelu (B,T,4C) @ fcprojw^T (C,4C) + fcprojb (C)
            matmul_forward(l_fcproj, l_fch_gelu, l_fcprojw, Some(l_fcprojb), bt, 4 * c, c);
            // residual3 (B,T,C) = residual2 + fcproj
            residual_forward(l_residual3, l_residual2, l_fcproj);
        }

        // final layernorm, then the LM head: logits against every token embedding (weights tied)
        let residual = at(a.residual3, nl - 1, nl);
        // lnf (B,T,C), lnf_mean and lnf_rstd (B,T) <- the last block's residual3 (B,T,C)
        layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, p.lnfw, p.lnfb, bt, c);
        // logits (B,T,Vp) <- lnf (B,T,C) @ wte^T (C,Vp)
        matmul_forward(a.logits, a.lnf, p.wte, None, bt, c, vp);

        // the loss: cross-entropy against the targets, through the softmax over the first V logits
        // (no probabilities are stored: see softmax_crossentropy)
        if let Some(targets) = targets {
            // losses (B,T) = logsumexp(logits) - logits[target]; logits_lse (B,T) = logsumexp(logits)
            crossentropy_forward(a.losses, a.logits_lse, a.logits, targets, bt, v, vp);
        }
        // [end twin]
        targets.map(|_| a.losses.iter().sum::<f32>() / bt as f32)
    }

    /// Sets every parameter gradient to zero (once per optimizer step; micro-batches accumulate).
    pub fn zero_grad(&mut self) {
        self.grads.fill(0.0);
    }

    /// The backward pass of the last `forward` (which must have had targets, and no backward since:
    /// this one writes the logits' gradient over the logits): adds the gradient of
    /// `loss_scale * mean loss` to `grads`. With gradient accumulation over n micro-batches,
    /// `loss_scale` = 1/n makes the sum of their gradients the gradient of the mean.
    pub fn backward(&mut self, loss_scale: f32) {
        assert!(self.has_targets, "backward needs a forward pass with targets");
        assert!(
            !self.logits_hold_gradient,
            "backward needs a new forward pass: the last backward wrote the logits' gradient over the logits"
        );
        let cfg = self.config;
        let (b, t) = (self.b, self.t);
        let (nl, nh, c, v, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size);
        let bt = b * t;
        let sizes = activation_sizes(&cfg, b, t);
        let gradient_sizes = gradient_sizes(&cfg, b, t);

        let Layers {
            encoder_backward,
            layernorm_backward,
            matmul_backward,
            attention_backward,
            residual_backward,
            gelu_backward,
            crossentropy_softmax_backward,
            ..
        } = Layers::new(self.kernels, self.precision);
        let weights = if self.precision == Precision::Bf16 { &self.params_bf16 } else { &self.params };
        let p = ParamViews::new(&self.layout.sizes(), weights);
        let gp = ParamViewsMut::new(&self.layout.sizes(), &mut self.grads);
        let a = ActivationViews::new(&sizes, &mut self.acts);
        let ga = GradientViews::new(&gradient_sizes, &mut self.grad_acts);
        let (inputs, targets) = (&self.inputs[..bt], &self.targets[..bt]);
        // d(mean loss)/d(loss at each position) = loss_scale/(B*T)
        ga.losses.fill(loss_scale / bt as f32);

        // [twin: backward]
        // The activation gradients live in one set of buffers for the head and one for a block, which
        // every block reuses (`model::GRADIENT_NAMES`). The layers add (+=) into them, so each is
        // cleared before the first layer that adds into it. The logits' gradient is written over the
        // logits, which nothing needs after it.
        zero(ga.lnf);
        zero(ga.residual);

        // the loss and the LM head, backwards
        // dlogits (B,T,Vp), written over the logits <- dlosses (B,T), logits_lse (B,T), targets
        crossentropy_softmax_backward(a.logits, ga.losses, a.logits_lse, targets, bt, v, vp);
        // dlnf (B,T,C), dwte (Vp,C) += from dlogits (B,T,Vp), in the logits' buffer
        matmul_backward(ga.lnf, gp.wte, None, a.logits, a.lnf, p.wte, bt, c, vp);
        let residual = at(a.residual3, nl - 1, nl);
        // dresidual (B,T,C), the gradient of the last residual3, dlnfw and dlnfb (C) += from dlnf (B,T,C)
        layernorm_backward(ga.residual, gp.lnfw, gp.lnfb, ga.lnf, residual, p.lnfw, a.lnf_mean, a.lnf_rstd, bt, c);

        for l in (0..nl).rev() {
            // the residual stream that entered block l
            let (residual, _) = block_residuals(&mut *a.encoded, &mut *a.residual3, l, nl);

            // this block's parameters
            let (l_ln1w, l_qkvw, l_attprojw) = (at(p.ln1w, l, nl), at(p.qkvw, l, nl), at(p.attprojw, l, nl));
            let (l_ln2w, l_fcw, l_fcprojw) = (at(p.ln2w, l, nl), at(p.fcw, l, nl), at(p.fcprojw, l, nl));

            // and their gradients
            let (dl_ln1w, dl_ln1b) = (at_mut(gp.ln1w, l, nl), at_mut(gp.ln1b, l, nl));
            let (dl_qkvw, dl_qkvb) = (at_mut(gp.qkvw, l, nl), at_mut(gp.qkvb, l, nl));
            let (dl_attprojw, dl_attprojb) = (at_mut(gp.attprojw, l, nl), at_mut(gp.attprojb, l, nl));
            let (dl_ln2w, dl_ln2b) = (at_mut(gp.ln2w, l, nl), at_mut(gp.ln2b, l, nl));
            let (dl_fcw, dl_fcb) = (at_mut(gp.fcw, l, nl), at_mut(gp.fcb, l, nl));
            let (dl_fcprojw, dl_fcprojb) = (at_mut(gp.fcprojw, l, nl), at_mut(gp.fcprojb, l, nl));

            // this block's activations, saved by the forward pass
            let (l_ln1, l_ln1_mean, l_ln1_rstd) = (at(a.ln1, l, nl), at(a.ln1_mean, l, nl), at(a.ln1_rstd, l, nl));
            let (l_qkv, l_atty, l_att_lse) = (at(a.qkv, l, nl), at(a.atty, l, nl), at(a.att_lse, l, nl));
            let (l_ln2, l_ln2_mean, l_ln2_rstd) = (at(a.ln2, l, nl), at(a.ln2_mean, l, nl), at(a.ln2_rstd, l, nl));
            let (l_residual2, l_fch, l_fch_gelu) = (at(a.residual2, l, nl), at(a.fch, l, nl), at(a.fch_gelu, l, nl));

            // and their gradients: the one set of block buffers, cleared for this block
            let (dl_ln1, dl_qkv, dl_atty) = (&mut *ga.ln1, &mut *ga.qkv, &mut *ga.atty);
            let (dl_delta, dl_attproj, dl_residual2) = (&mut *ga.att_delta, &mut *ga.attproj, &mut *ga.residual2);
            let (dl_ln2, dl_fch) = (&mut *ga.ln2, &mut *ga.fch);
            let (dl_fch_gelu, dl_fcproj) = (&mut *ga.fch_gelu, &mut *ga.fcproj);
            for grad in [
                &mut *dl_ln1,
                &mut *dl_qkv,
                &mut *dl_atty,
                &mut *dl_attproj,
                &mut *dl_residual2,
                &mut *dl_ln2,
                &mut *dl_fch,
                &mut *dl_fch_gelu,
                &mut *dl_fcproj,
            ] {
                zero(grad);
            }
            // the gradient of the residual stream: of block l's output (residual3) here
            let dresidual = &mut *ga.residual;

            // MLP, backwards: the forward's calls in reverse order
            // dresidual2 and dfcproj (B,T,C) += dresidual (B,T,C)
            residual_backward(dl_residual2, dl_fcproj, dresidual);
            // dfch_gelu (B,T,4C), dfcprojw (C,4C), dfcprojb (C) += from dfcproj (B,T,C)
            matmul_backward(dl_fch_gelu, dl_fcprojw, Some(dl_fcprojb), dl_fcproj, l_fch_gelu, l_fcprojw, bt, 4 * c, c);
            // dfch (B,T,4C) += gelu'(fch) * dfch_gelu
            gelu_backward(dl_fch, l_fch, dl_fch_gelu);
            // dln2 (B,T,C), dfcw (4C,C), dfcb (4C) += from dfch (B,T,4C)
            matmul_backward(dl_ln2, dl_fcw, Some(dl_fcb), dl_fch, l_ln2, l_fcw, bt, c, 4 * c);
            // dresidual2 (B,T,C), dln2w and dln2b (C) += from dln2 (B,T,C)
            layernorm_backward(
                dl_residual2,
                dl_ln2w,
                dl_ln2b,
                dl_ln2,
                l_residual2,
                l_ln2w,
                l_ln2_mean,
                l_ln2_rstd,
                bt,
                c,
            );

            // attention, backwards
            // the stream's gradient buffer now takes the gradient of block l's input: clear it
            zero(dresidual);
            // dresidual and dattproj (B,T,C) += dresidual2 (B,T,C)
            residual_backward(dresidual, dl_attproj, dl_residual2);
            // datty (B,T,C), dattprojw (C,C), dattprojb (C) += from dattproj (B,T,C)
            matmul_backward(dl_atty, dl_attprojw, Some(dl_attprojb), dl_attproj, l_atty, l_attprojw, bt, c, c);
            // dqkv (B,T,3C) += from datty (B,T,C), the scores recomputed from qkv and att_lse (delta: scratch)
            attention_backward(dl_qkv, dl_delta, dl_atty, l_qkv, l_atty, l_att_lse, b, t, c, nh);
            // dln1 (B,T,C), dqkvw (3C,C), dqkvb (3C) += from dqkv (B,T,3C)
            matmul_backward(dl_ln1, dl_qkvw, Some(dl_qkvb), dl_qkv, l_ln1, l_qkvw, bt, c, 3 * c);
            // dresidual (B,T,C), dln1w and dln1b (C) += from dln1 (B,T,C)
            layernorm_backward(dresidual, dl_ln1w, dl_ln1b, dl_ln1, residual, l_ln1w, l_ln1_mean, l_ln1_rstd, bt, c);
        }

        // embeddings, backwards
        // dwte (Vp,C), dwpe (maxT,C) += from dresidual (B,T,C), now the gradient of the embedding
        encoder_backward(gp.wte, gp.wpe, ga.residual, inputs, b, t, c);
        // [end twin]
        self.logits_hold_gradient = true;
    }

    /// The logits (B, T, Vp) of the last forward pass (after a backward pass: their gradient).
    pub fn logits(&self) -> &[f32] {
        self.activation("logits")
    }

    /// The per-position losses (B, T) of the last forward pass (which must have had targets).
    pub fn losses(&self) -> &[f32] {
        self.activation("losses")
    }

    /// One activation tensor of the last forward pass, by its name in `ACTIVATION_NAMES`.
    fn activation(&self, name: &str) -> &[f32] {
        let i = ACTIVATION_NAMES.iter().position(|&n| n == name).expect("a known activation");
        let sizes = activation_sizes(&self.config, self.b, self.t);
        let offset: usize = sizes[..i].iter().sum();
        &self.acts[offset..offset + sizes[i]]
    }
}
