//! GPT-2 on the CPU: the layers of this folder composed into the whole model, forward and backward.
//! Twin: `src/cuda/gpt2.rs`, which makes the same calls to the kernels in `kernels/`.
//!
//! Read `forward` top to bottom: it is the model. Parameters, their gradients and the activations
//! each live in one flat buffer (see `src/model/mod.rs`), allocated once; a step allocates nothing.

use super::attention::{attention_backward, attention_forward};
use super::encoder::{encoder_backward, encoder_forward};
use super::gelu::{gelu_backward, gelu_forward};
use super::layernorm::{layernorm_backward, layernorm_forward};
use super::residual::{residual_backward, residual_forward};
use super::softmax_crossentropy::{crossentropy_forward, crossentropy_softmax_backward, softmax_forward};
use super::{fast, matmul};
use crate::config::ModelConfig;
use crate::model::{activation_sizes, ActivationViews, ParamLayout, ParamViews, ParamViewsMut, ACTIVATION_NAMES};

/// Layer `l`'s part of a tensor stacked over `n` layers.
fn at(t: &[f32], l: usize, n: usize) -> &[f32] {
    let size = t.len() / n;
    &t[l * size..(l + 1) * size]
}

/// Mutable version of `at`.
fn at_mut(t: &mut [f32], l: usize, n: usize) -> &mut [f32] {
    let size = t.len() / n;
    &mut t[l * size..(l + 1) * size]
}

/// Which implementation of the layers the model calls: the readable reference in this folder, or
/// the fast versions in `src/cpu/fast/`, which are tested against the reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuKernels {
    Reference,
    #[default]
    Fast,
}

pub type MatmulForward = fn(&mut [f32], &[f32], &[f32], Option<&[f32]>, usize, usize, usize);
pub type MatmulBackward = fn(&mut [f32], &mut [f32], Option<&mut [f32]>, &[f32], &[f32], &[f32], usize, usize, usize);
pub type SoftmaxForward = fn(&mut [f32], &[f32], usize, usize, usize);
pub type GeluForward = fn(&mut [f32], &[f32]);
pub type GeluBackward = fn(&mut [f32], &[f32], &[f32]);
pub type AttentionForward = fn(&mut [f32], &mut [f32], &mut [f32], &[f32], usize, usize, usize, usize);
pub type AttentionBackward = fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[f32], &[f32], usize, usize, usize, usize);

impl CpuKernels {
    /// The matmul forward and backward of this implementation.
    pub fn matmul(self) -> (MatmulForward, MatmulBackward) {
        match self {
            CpuKernels::Reference => (matmul::matmul_forward, matmul::matmul_backward),
            CpuKernels::Fast => (fast::matmul::matmul_forward, fast::matmul::matmul_backward),
        }
    }

    /// The GELU forward and backward of this implementation.
    pub fn gelu(self) -> (GeluForward, GeluBackward) {
        match self {
            CpuKernels::Reference => (gelu_forward, gelu_backward),
            CpuKernels::Fast => (fast::gelu::gelu_forward, fast::gelu::gelu_backward),
        }
    }

    /// The softmax over the vocabulary of this implementation.
    pub fn softmax(self) -> SoftmaxForward {
        match self {
            CpuKernels::Reference => softmax_forward,
            CpuKernels::Fast => fast::softmax_crossentropy::softmax_forward,
        }
    }

    /// The attention forward and backward of this implementation.
    pub fn attention(self) -> (AttentionForward, AttentionBackward) {
        match self {
            CpuKernels::Reference => (attention_forward, attention_backward),
            CpuKernels::Fast => (fast::attention::attention_forward, fast::attention::attention_backward),
        }
    }
}

pub struct Gpt2 {
    pub config: ModelConfig,
    /// Reference or fast layers (fast by default).
    pub kernels: CpuKernels,
    pub layout: ParamLayout,
    /// All parameters, llm.c's order (see `ParamLayout`).
    pub params: Vec<f32>,
    /// Their gradients, same layout; backward adds into them, `zero_grad` clears them.
    pub grads: Vec<f32>,
    /// The activations of the last forward pass and their gradients (`activation_sizes` layout).
    acts: Vec<f32>,
    grad_acts: Vec<f32>,
    /// The batch shape of the last forward pass.
    b: usize,
    t: usize,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    has_targets: bool,
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
            layout,
            params,
            grads,
            acts: Vec::new(),
            grad_acts: Vec::new(),
            b: 0,
            t: 0,
            inputs: Vec::new(),
            targets: Vec::new(),
            has_targets: false,
        }
    }

    /// Makes the activation buffers large enough for (B, T). Allocates only when the shape grows,
    /// so in training this happens at the first step and never again.
    fn reserve(&mut self, b: usize, t: usize) {
        let needed: usize = activation_sizes(&self.config, b, t).iter().sum();
        if self.acts.len() < needed {
            self.acts = vec![0.0; needed];
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
        let (bt, btc) = (b * t, b * t * c);
        self.b = b;
        self.t = t;
        self.inputs[..bt].copy_from_slice(inputs);
        self.has_targets = targets.is_some();
        if let Some(targets) = targets {
            assert!(targets.iter().all(|&tok| (tok as usize) < v), "target token id out of range");
            self.targets[..bt].copy_from_slice(targets);
        }

        let (matmul_forward, _) = self.kernels.matmul();
        let (gelu_forward, _) = self.kernels.gelu();
        let (attention_forward, _) = self.kernels.attention();
        let softmax_forward = self.kernels.softmax();
        let p = ParamViews::new(&self.layout.sizes(), &self.params);
        let a = ActivationViews::new(&activation_sizes(&cfg, b, t), &mut self.acts);

        // token embedding + position embedding
        encoder_forward(a.encoded, inputs, p.wte, p.wpe, b, t, c);

        for l in 0..nl {
            // the residual stream entering block l: the embedding, or block l-1's output
            let (done, rest) = a.residual3.split_at_mut(l * btc);
            let residual: &[f32] = if l == 0 { a.encoded } else { &done[(l - 1) * btc..] };
            let l_residual3 = &mut rest[..btc];

            // this block's slices of the activations
            let l_ln1 = at_mut(a.ln1, l, nl);
            let l_ln1_mean = at_mut(a.ln1_mean, l, nl);
            let l_ln1_rstd = at_mut(a.ln1_rstd, l, nl);
            let l_qkv = at_mut(a.qkv, l, nl);
            let l_atty = at_mut(a.atty, l, nl);
            let l_preatt = at_mut(a.preatt, l, nl);
            let l_att = at_mut(a.att, l, nl);
            let l_attproj = at_mut(a.attproj, l, nl);
            let l_residual2 = at_mut(a.residual2, l, nl);
            let l_ln2 = at_mut(a.ln2, l, nl);
            let l_ln2_mean = at_mut(a.ln2_mean, l, nl);
            let l_ln2_rstd = at_mut(a.ln2_rstd, l, nl);
            let l_fch = at_mut(a.fch, l, nl);
            let l_fch_gelu = at_mut(a.fch_gelu, l, nl);
            let l_fcproj = at_mut(a.fcproj, l, nl);

            // attention: layernorm -> qkv projection -> causal self-attention -> output projection -> residual
            layernorm_forward(l_ln1, l_ln1_mean, l_ln1_rstd, residual, at(p.ln1w, l, nl), at(p.ln1b, l, nl), bt, c);
            matmul_forward(l_qkv, l_ln1, at(p.qkvw, l, nl), Some(at(p.qkvb, l, nl)), bt, c, 3 * c);
            attention_forward(l_atty, l_preatt, l_att, l_qkv, b, t, c, nh);
            matmul_forward(l_attproj, l_atty, at(p.attprojw, l, nl), Some(at(p.attprojb, l, nl)), bt, c, c);
            residual_forward(l_residual2, residual, l_attproj);

            // MLP: layernorm -> fc (C -> 4C) -> GELU -> projection (4C -> C) -> residual
            layernorm_forward(l_ln2, l_ln2_mean, l_ln2_rstd, l_residual2, at(p.ln2w, l, nl), at(p.ln2b, l, nl), bt, c);
            matmul_forward(l_fch, l_ln2, at(p.fcw, l, nl), Some(at(p.fcb, l, nl)), bt, c, 4 * c);
            gelu_forward(l_fch_gelu, l_fch);
            matmul_forward(l_fcproj, l_fch_gelu, at(p.fcprojw, l, nl), Some(at(p.fcprojb, l, nl)), bt, 4 * c, c);
            residual_forward(l_residual3, l_residual2, l_fcproj);
        }

        // final layernorm, then the LM head: logits against every token embedding (weights tied)
        let residual = at(a.residual3, nl - 1, nl);
        layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, p.lnfw, p.lnfb, bt, c);
        matmul_forward(a.logits, a.lnf, p.wte, None, bt, c, vp);
        softmax_forward(a.probs, a.logits, bt, v, vp);

        // the loss: mean cross-entropy against the targets
        let targets = targets?;
        crossentropy_forward(a.losses, a.probs, targets, bt, vp);
        Some(a.losses.iter().sum::<f32>() / bt as f32)
    }

    /// Sets every parameter gradient to zero (once per optimizer step; micro-batches accumulate).
    pub fn zero_grad(&mut self) {
        self.grads.fill(0.0);
    }

    /// The backward pass of the last `forward` (which must have had targets): adds the gradient of
    /// `loss_scale * mean loss` to `grads`. With gradient accumulation over n micro-batches,
    /// `loss_scale` = 1/n makes the sum of their gradients the gradient of the mean.
    pub fn backward(&mut self, loss_scale: f32) {
        assert!(self.has_targets, "backward needs a forward pass with targets");
        let cfg = self.config;
        let (b, t) = (self.b, self.t);
        let (nl, nh, c, v, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size);
        let (bt, btc) = (b * t, b * t * c);
        let sizes = activation_sizes(&cfg, b, t);

        let (_, matmul_backward) = self.kernels.matmul();
        let (_, gelu_backward) = self.kernels.gelu();
        let (_, attention_backward) = self.kernels.attention();
        let p = ParamViews::new(&self.layout.sizes(), &self.params);
        let gp = ParamViewsMut::new(&self.layout.sizes(), &mut self.grads);
        let a = ActivationViews::new(&sizes, &mut self.acts);
        let g = ActivationViews::new(&sizes, &mut self.grad_acts);
        let (inputs, targets) = (&self.inputs[..bt], &self.targets[..bt]);

        // Activation gradients start from zero each backward (parameter gradients accumulate across
        // micro-batches). Only those the layers add into need zeroing: attention overwrites its
        // dpreatt and datt, and probs, the means and the rstds get no gradient.
        for grad in [
            &mut *g.encoded,
            &mut *g.ln1,
            &mut *g.qkv,
            &mut *g.atty,
            &mut *g.attproj,
            &mut *g.residual2,
            &mut *g.ln2,
            &mut *g.fch,
            &mut *g.fch_gelu,
            &mut *g.fcproj,
            &mut *g.residual3,
            &mut *g.lnf,
            &mut *g.logits,
        ] {
            grad.fill(0.0);
        }

        // d(mean loss)/d(loss at each position) = 1/(B*T)
        g.losses.fill(loss_scale / bt as f32);
        crossentropy_softmax_backward(g.logits, g.losses, a.probs, targets, bt, v, vp);
        matmul_backward(g.lnf, gp.wte, None, g.logits, a.lnf, p.wte, bt, c, vp);
        let residual = at(a.residual3, nl - 1, nl);
        let dresidual = at_mut(g.residual3, nl - 1, nl);
        layernorm_backward(dresidual, gp.lnfw, gp.lnfb, g.lnf, residual, p.lnfw, a.lnf_mean, a.lnf_rstd, bt, c);

        for l in (0..nl).rev() {
            // the residual stream that entered block l, and its gradient
            let residual: &[f32] = if l == 0 { a.encoded } else { at(a.residual3, l - 1, nl) };
            let (g_done, g_rest) = g.residual3.split_at_mut(l * btc);
            let dresidual: &mut [f32] = if l == 0 { &mut *g.encoded } else { &mut g_done[(l - 1) * btc..] };
            let dl_residual3 = &g_rest[..btc];

            // the gradients of this block's activations
            let dl_ln1 = at_mut(g.ln1, l, nl);
            let dl_qkv = at_mut(g.qkv, l, nl);
            let dl_atty = at_mut(g.atty, l, nl);
            let dl_preatt = at_mut(g.preatt, l, nl);
            let dl_att = at_mut(g.att, l, nl);
            let dl_attproj = at_mut(g.attproj, l, nl);
            let dl_residual2 = at_mut(g.residual2, l, nl);
            let dl_ln2 = at_mut(g.ln2, l, nl);
            let dl_fch = at_mut(g.fch, l, nl);
            let dl_fch_gelu = at_mut(g.fch_gelu, l, nl);
            let dl_fcproj = at_mut(g.fcproj, l, nl);

            // this block's parameters, their gradients and its saved activations
            let (l_ln1w, l_qkvw, l_attprojw, l_ln2w, l_fcw, l_fcprojw) = (
                at(p.ln1w, l, nl),
                at(p.qkvw, l, nl),
                at(p.attprojw, l, nl),
                at(p.ln2w, l, nl),
                at(p.fcw, l, nl),
                at(p.fcprojw, l, nl),
            );
            let (dl_ln1w, dl_ln1b) = (at_mut(gp.ln1w, l, nl), at_mut(gp.ln1b, l, nl));
            let (dl_qkvw, dl_qkvb) = (at_mut(gp.qkvw, l, nl), Some(at_mut(gp.qkvb, l, nl)));
            let (dl_attprojw, dl_attprojb) = (at_mut(gp.attprojw, l, nl), Some(at_mut(gp.attprojb, l, nl)));
            let (dl_ln2w, dl_ln2b) = (at_mut(gp.ln2w, l, nl), at_mut(gp.ln2b, l, nl));
            let (dl_fcw, dl_fcb) = (at_mut(gp.fcw, l, nl), Some(at_mut(gp.fcb, l, nl)));
            let (dl_fcprojw, dl_fcprojb) = (at_mut(gp.fcprojw, l, nl), Some(at_mut(gp.fcprojb, l, nl)));
            let (l_ln1, l_ln1_mean, l_ln1_rstd) = (at(a.ln1, l, nl), at(a.ln1_mean, l, nl), at(a.ln1_rstd, l, nl));
            let (l_qkv, l_atty, l_att) = (at(a.qkv, l, nl), at(a.atty, l, nl), at(a.att, l, nl));
            let (l_ln2, l_ln2_mean, l_ln2_rstd) = (at(a.ln2, l, nl), at(a.ln2_mean, l, nl), at(a.ln2_rstd, l, nl));
            let (l_residual2, l_fch, l_fch_gelu) = (at(a.residual2, l, nl), at(a.fch, l, nl), at(a.fch_gelu, l, nl));

            // MLP, backwards: the forward's calls in reverse order
            residual_backward(dl_residual2, dl_fcproj, dl_residual3);
            matmul_backward(dl_fch_gelu, dl_fcprojw, dl_fcprojb, dl_fcproj, l_fch_gelu, l_fcprojw, bt, 4 * c, c);
            gelu_backward(dl_fch, l_fch, dl_fch_gelu);
            matmul_backward(dl_ln2, dl_fcw, dl_fcb, dl_fch, l_ln2, l_fcw, bt, c, 4 * c);
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
            residual_backward(dresidual, dl_attproj, dl_residual2);
            matmul_backward(dl_atty, dl_attprojw, dl_attprojb, dl_attproj, l_atty, l_attprojw, bt, c, c);
            attention_backward(dl_qkv, dl_preatt, dl_att, dl_atty, l_qkv, l_att, b, t, c, nh);
            matmul_backward(dl_ln1, dl_qkvw, dl_qkvb, dl_qkv, l_ln1, l_qkvw, bt, c, 3 * c);
            layernorm_backward(dresidual, dl_ln1w, dl_ln1b, dl_ln1, residual, l_ln1w, l_ln1_mean, l_ln1_rstd, bt, c);
        }

        // embeddings, backwards
        encoder_backward(gp.wte, gp.wpe, g.encoded, inputs, b, t, c);
    }

    /// The probabilities (B, T, Vp) of the last forward pass.
    pub fn probs(&self) -> &[f32] {
        self.activation("probs")
    }

    /// The logits (B, T, Vp) of the last forward pass.
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
