//! GPT-2 on the GPU: the kernels of `kernels/` composed into the whole model, forward and backward,
//! with AdamW and the gradient norm on the device. Twin: `src/cpu/gpt2.rs`, whose `forward` and
//! `backward` this file follows call for call.
//!
//! Parameters, gradients, AdamW's two moments and the activations (and their gradients) each live
//! in one device buffer in the layouts of `src/model/mod.rs`, allocated once for the largest batch;
//! a step allocates nothing, and the only numbers that come back to the host are the losses (B*T
//! floats) and the gradient norm.

use super::context::{Dev, DeviceBuffer, Gpu};
use crate::config::ModelConfig;
use crate::memory::{gpu_training_bytes, largest_gpu_batch, GPU_MEMORY_RESERVE};
use crate::model::{activation_sizes, ParamLayout};
use crate::optim::AdamWConfig;
use anyhow::{bail, Result};

/// Defines a struct of named device views cut, in field order, from one device view, given each
/// field's size: the device version of `ParamViews` / `ActivationViews` in `src/model/mod.rs`.
macro_rules! dev_views {
    ($(#[$doc:meta])* $name:ident, $n:literal, [$($field:ident),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name {
            $(pub $field: Dev<f32>,)+
        }
        impl $name {
            pub fn new(flat: Dev<f32>, sizes: &[usize; $n]) -> Self {
                let [$($field),+] = flat.split(sizes);
                $name { $($field,)+ }
            }
        }
    };
}

dev_views!(
    /// The 16 parameter tensors (or their gradients) on the device.
    DevParams, 16,
    [wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb]
);
dev_views!(
    /// The 23 activation tensors (or their gradients) on the device.
    DevActivations, 23,
    [encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, preatt, att, attproj, residual2, ln2, ln2_mean, ln2_rstd,
     fch, fch_gelu, fcproj, residual3, lnf, lnf_mean, lnf_rstd, logits, probs, losses]
);

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

pub struct CudaGpt2 {
    pub gpu: Gpu,
    pub config: ModelConfig,
    pub layout: ParamLayout,
    /// All parameters, llm.c's order, and their gradients and AdamW moments in the same layout.
    params: DeviceBuffer<f32>,
    grads: DeviceBuffer<f32>,
    m: DeviceBuffer<f32>,
    v: DeviceBuffer<f32>,
    /// The activations of the last forward pass and their gradients, sized for (max_b, max_t).
    acts: DeviceBuffer<f32>,
    grad_acts: DeviceBuffer<f32>,
    inputs: DeviceBuffer<u32>,
    targets: DeviceBuffer<u32>,
    /// The batch shape the buffers were sized for.
    pub max_b: usize,
    pub max_t: usize,
    /// The batch shape of the last forward pass.
    b: usize,
    t: usize,
    has_targets: bool,
    /// Host copy of dlosses (all loss_scale / (B*T)), uploaded at each backward.
    dlosses: Vec<f32>,
}

impl CudaGpt2 {
    /// The model with parameters `params` (the flat buffer of `ParamLayout::new(&config)`), with
    /// buffers for batches up to (max_b, max_t). Fails with the largest batch that fits when the
    /// device has too little free memory.
    pub fn new(gpu: Gpu, config: ModelConfig, params: &[f32], max_b: usize, max_t: usize) -> Result<Self> {
        let layout = ParamLayout::new(&config);
        if params.len() != layout.total {
            bail!("parameter buffer of {} numbers does not match the config's {}", params.len(), layout.total);
        }
        if max_t > config.max_seq_len {
            bail!("sequence length {max_t} exceeds the model's maximum {}", config.max_seq_len);
        }
        let (free, total) = gpu.memory()?;
        let needed = gpu_training_bytes(&config, max_b, max_t);
        if needed.saturating_add(GPU_MEMORY_RESERVE) > free {
            let p = ParamLayout::new(&config).total * 4 * 4;
            let fits = largest_gpu_batch(&config, max_t, free, max_b);
            bail!(
                "B={max_b} T={max_t} needs {:.1} GiB of GPU memory ({:.1} GiB for parameters, gradients and AdamW's \
                 two moments, {:.1} GiB for activations and their gradients) plus {:.1} GiB spare, but {} has {:.1} of \
                 {:.1} GiB free; {}",
                gib(needed),
                gib(p),
                gib(needed - p),
                gib(GPU_MEMORY_RESERVE),
                gpu.name,
                gib(free),
                gib(total),
                if fits > 0 {
                    format!("the largest batch that fits at T={max_t} is --batch {fits}")
                } else {
                    format!("not even --batch 1 fits at T={max_t}: try a shorter --seq or a smaller model")
                }
            );
        }
        let n = layout.total;
        let act_total: usize = activation_sizes(&config, max_b, max_t).iter().sum();
        let model = CudaGpt2 {
            params: gpu.alloc(n)?,
            grads: gpu.alloc(n)?,
            m: gpu.alloc(n)?,
            v: gpu.alloc(n)?,
            acts: gpu.alloc(act_total)?,
            grad_acts: gpu.alloc(act_total)?,
            inputs: gpu.alloc(max_b * max_t)?,
            targets: gpu.alloc(max_b * max_t)?,
            gpu,
            config,
            layout,
            max_b,
            max_t,
            b: 0,
            t: 0,
            has_targets: false,
            dlosses: Vec::new(),
        };
        model.gpu.upload(model.params.all(), params)?;
        Ok(model)
    }

    fn check_tokens(&self, tokens: &[u32], what: &str) -> Result<()> {
        let v = self.config.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&tok| tok as usize >= v) {
            bail!("{what} token id {bad} is out of range (vocabulary size {v})");
        }
        Ok(())
    }

    /// The forward pass over tokens `inputs` (B, T); with `targets` (B, T) it also computes the
    /// losses, which `mean_loss` reads and `backward` differentiates. Queues the work and returns.
    pub fn forward(&mut self, inputs: &[u32], targets: Option<&[u32]>, b: usize, t: usize) -> Result<()> {
        let cfg = self.config;
        let (nl, nh, c, v, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size);
        if b * t == 0 || inputs.len() != b * t || targets.is_some_and(|x| x.len() != b * t) {
            bail!("a batch of B={b} T={t} needs B*T > 0 input (and target) tokens, got {}", inputs.len());
        }
        let sizes = activation_sizes(&cfg, b, t);
        if t > self.max_t || sizes.iter().sum::<usize>() > self.acts.len() || b * t > self.inputs.len() {
            bail!("batch B={b} T={t} is larger than the buffers allocated for B={} T={}", self.max_b, self.max_t);
        }
        self.check_tokens(inputs, "input")?;
        if let Some(targets) = targets {
            self.check_tokens(targets, "target")?;
        }
        let (bt, g) = (b * t, &self.gpu);
        self.b = b;
        self.t = t;
        let inp = self.inputs.all().slice(0, bt);
        g.upload(inp, inputs)?;
        self.has_targets = targets.is_some();
        let tgt = self.targets.all().slice(0, bt);
        if let Some(targets) = targets {
            g.upload(tgt, targets)?;
        }

        let p = DevParams::new(self.params.all(), &self.layout.sizes());
        let a = DevActivations::new(self.acts.all(), &sizes);

        // token embedding + position embedding
        // SAFETY: the tokens were checked against V <= Vp (the rows of wte) by `check_tokens` above.
        unsafe { g.encoder_forward(a.encoded, inp, p.wte, p.wpe, b, t, c)? };

        for l in 0..nl {
            // the residual stream entering block l: the embedding, or block l-1's output
            let residual = if l == 0 { a.encoded } else { a.residual3.layer(l - 1, nl) };

            // this block's slices of the activations
            let l_ln1 = a.ln1.layer(l, nl);
            let l_ln1_mean = a.ln1_mean.layer(l, nl);
            let l_ln1_rstd = a.ln1_rstd.layer(l, nl);
            let l_qkv = a.qkv.layer(l, nl);
            let l_atty = a.atty.layer(l, nl);
            let l_preatt = a.preatt.layer(l, nl);
            let l_att = a.att.layer(l, nl);
            let l_attproj = a.attproj.layer(l, nl);
            let l_residual2 = a.residual2.layer(l, nl);
            let l_ln2 = a.ln2.layer(l, nl);
            let l_ln2_mean = a.ln2_mean.layer(l, nl);
            let l_ln2_rstd = a.ln2_rstd.layer(l, nl);
            let l_fch = a.fch.layer(l, nl);
            let l_fch_gelu = a.fch_gelu.layer(l, nl);
            let l_fcproj = a.fcproj.layer(l, nl);
            let l_residual3 = a.residual3.layer(l, nl);

            // attention: layernorm -> qkv projection -> causal self-attention -> output projection -> residual
            let (ln1w, ln1b) = (p.ln1w.layer(l, nl), p.ln1b.layer(l, nl));
            g.layernorm_forward(l_ln1, l_ln1_mean, l_ln1_rstd, residual, ln1w, ln1b, bt, c)?;
            g.matmul_forward(l_qkv, l_ln1, p.qkvw.layer(l, nl), Some(p.qkvb.layer(l, nl)), bt, c, 3 * c)?;
            g.attention_forward(l_atty, l_preatt, l_att, l_qkv, b, t, c, nh)?;
            let (attprojw, attprojb) = (p.attprojw.layer(l, nl), p.attprojb.layer(l, nl));
            g.matmul_forward(l_attproj, l_atty, attprojw, Some(attprojb), bt, c, c)?;
            g.residual_forward(l_residual2, residual, l_attproj)?;

            // MLP: layernorm -> fc (C -> 4C) -> GELU -> projection (4C -> C) -> residual
            let (ln2w, ln2b) = (p.ln2w.layer(l, nl), p.ln2b.layer(l, nl));
            g.layernorm_forward(l_ln2, l_ln2_mean, l_ln2_rstd, l_residual2, ln2w, ln2b, bt, c)?;
            g.matmul_forward(l_fch, l_ln2, p.fcw.layer(l, nl), Some(p.fcb.layer(l, nl)), bt, c, 4 * c)?;
            g.gelu_forward(l_fch_gelu, l_fch)?;
            let (fcprojw, fcprojb) = (p.fcprojw.layer(l, nl), p.fcprojb.layer(l, nl));
            g.matmul_forward(l_fcproj, l_fch_gelu, fcprojw, Some(fcprojb), bt, 4 * c, c)?;
            g.residual_forward(l_residual3, l_residual2, l_fcproj)?;
        }

        // final layernorm, then the LM head: logits against every token embedding (weights tied)
        let residual = a.residual3.layer(nl - 1, nl);
        g.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, p.lnfw, p.lnfb, bt, c)?;
        g.matmul_forward(a.logits, a.lnf, p.wte, None, bt, c, vp)?;
        g.softmax_forward(a.probs, a.logits, bt, v, vp)?;

        // the loss: cross-entropy against the targets
        if targets.is_some() {
            // SAFETY: the targets were checked against V <= Vp by `check_tokens` above.
            unsafe { g.crossentropy_forward(a.losses, a.probs, tgt, bt, vp)? };
        }
        Ok(())
    }

    /// The mean loss of the last forward pass (which must have had targets): copies the B*T losses
    /// back and sums them in the CPU's order. Waits for the queued work.
    pub fn mean_loss(&self) -> Result<f32> {
        let losses = self.losses()?;
        Ok(losses.iter().sum::<f32>() / (self.b * self.t) as f32)
    }

    /// The B*T per-position losses of the last forward pass (which must have had targets), copied back.
    /// Waits for the queued work.
    pub fn losses(&self) -> Result<Vec<f32>> {
        if !self.has_targets {
            bail!("the last forward pass had no targets, so there is no loss");
        }
        let a = DevActivations::new(self.acts.all(), &activation_sizes(&self.config, self.b, self.t));
        self.gpu.download(a.losses)
    }

    /// Sets every parameter gradient to zero (once per optimizer step; micro-batches accumulate).
    pub fn zero_grad(&mut self) -> Result<()> {
        self.gpu.zero(self.grads.all())
    }

    /// The backward pass of the last `forward` (which must have had targets): adds the gradient of
    /// `loss_scale * mean loss` to the parameter gradients. Queues the work and returns.
    pub fn backward(&mut self, loss_scale: f32) -> Result<()> {
        if !self.has_targets {
            bail!("backward needs a forward pass with targets");
        }
        let cfg = self.config;
        let (b, t) = (self.b, self.t);
        let (nl, nh, c, v, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size);
        let bt = b * t;
        let sizes = activation_sizes(&cfg, b, t);
        let g = &self.gpu;

        let p = DevParams::new(self.params.all(), &self.layout.sizes());
        let gp = DevParams::new(self.grads.all(), &self.layout.sizes());
        let a = DevActivations::new(self.acts.all(), &sizes);
        let ga = DevActivations::new(self.grad_acts.all(), &sizes);
        // Activation gradients start from zero each backward (parameter gradients accumulate), as in
        // src/cpu/gpt2.rs: only those the kernels add into; attention overwrites dpreatt and datt,
        // and probs, the means and the rstds get no gradient.
        for grad in [
            ga.encoded,
            ga.ln1,
            ga.qkv,
            ga.atty,
            ga.attproj,
            ga.residual2,
            ga.ln2,
            ga.fch,
            ga.fch_gelu,
            ga.fcproj,
            ga.residual3,
            ga.lnf,
            ga.logits,
        ] {
            g.zero(grad)?;
        }
        let (inputs, targets) = (self.inputs.all().slice(0, bt), self.targets.all().slice(0, bt));

        // d(mean loss)/d(loss at each position) = 1/(B*T)
        self.dlosses.clear();
        self.dlosses.resize(bt, loss_scale / bt as f32);
        g.upload(ga.losses, &self.dlosses)?;
        g.crossentropy_softmax_backward(ga.logits, ga.losses, a.probs, targets, bt, v, vp)?;
        g.matmul_backward(ga.lnf, gp.wte, None, ga.logits, a.lnf, p.wte, bt, c, vp)?;
        let residual = a.residual3.layer(nl - 1, nl);
        let dresidual = ga.residual3.layer(nl - 1, nl);
        g.layernorm_backward(dresidual, gp.lnfw, gp.lnfb, ga.lnf, residual, p.lnfw, a.lnf_mean, a.lnf_rstd, bt, c)?;

        for l in (0..nl).rev() {
            // the residual stream that entered block l, and its gradient
            let residual = if l == 0 { a.encoded } else { a.residual3.layer(l - 1, nl) };
            let dresidual = if l == 0 { ga.encoded } else { ga.residual3.layer(l - 1, nl) };
            let dl_residual3 = ga.residual3.layer(l, nl);

            // the gradients of this block's activations
            let dl_ln1 = ga.ln1.layer(l, nl);
            let dl_qkv = ga.qkv.layer(l, nl);
            let dl_atty = ga.atty.layer(l, nl);
            let dl_preatt = ga.preatt.layer(l, nl);
            let dl_att = ga.att.layer(l, nl);
            let dl_attproj = ga.attproj.layer(l, nl);
            let dl_residual2 = ga.residual2.layer(l, nl);
            let dl_ln2 = ga.ln2.layer(l, nl);
            let dl_fch = ga.fch.layer(l, nl);
            let dl_fch_gelu = ga.fch_gelu.layer(l, nl);
            let dl_fcproj = ga.fcproj.layer(l, nl);

            // MLP, backwards
            g.residual_backward(dl_residual2, dl_fcproj, dl_residual3)?;
            let (fch_gelu, fcprojw) = (a.fch_gelu.layer(l, nl), p.fcprojw.layer(l, nl));
            let (dfcprojw, dfcprojb) = (gp.fcprojw.layer(l, nl), gp.fcprojb.layer(l, nl));
            g.matmul_backward(dl_fch_gelu, dfcprojw, Some(dfcprojb), dl_fcproj, fch_gelu, fcprojw, bt, 4 * c, c)?;
            g.gelu_backward(dl_fch, a.fch.layer(l, nl), dl_fch_gelu)?;
            let (dfcw, dfcb) = (gp.fcw.layer(l, nl), gp.fcb.layer(l, nl));
            g.matmul_backward(dl_ln2, dfcw, Some(dfcb), dl_fch, a.ln2.layer(l, nl), p.fcw.layer(l, nl), bt, c, 4 * c)?;
            let (ln2_mean, ln2_rstd) = (a.ln2_mean.layer(l, nl), a.ln2_rstd.layer(l, nl));
            let (dln2w, dln2b) = (gp.ln2w.layer(l, nl), gp.ln2b.layer(l, nl));
            let (residual2, ln2w) = (a.residual2.layer(l, nl), p.ln2w.layer(l, nl));
            g.layernorm_backward(dl_residual2, dln2w, dln2b, dl_ln2, residual2, ln2w, ln2_mean, ln2_rstd, bt, c)?;

            // attention, backwards
            g.residual_backward(dresidual, dl_attproj, dl_residual2)?;
            let (atty, attprojw) = (a.atty.layer(l, nl), p.attprojw.layer(l, nl));
            let (dattprojw, dattprojb) = (gp.attprojw.layer(l, nl), gp.attprojb.layer(l, nl));
            g.matmul_backward(dl_atty, dattprojw, Some(dattprojb), dl_attproj, atty, attprojw, bt, c, c)?;
            let (qkv, att) = (a.qkv.layer(l, nl), a.att.layer(l, nl));
            g.attention_backward(dl_qkv, dl_preatt, dl_att, dl_atty, qkv, att, b, t, c, nh)?;
            let (dqkvw, dqkvb) = (gp.qkvw.layer(l, nl), gp.qkvb.layer(l, nl));
            g.matmul_backward(
                dl_ln1,
                dqkvw,
                Some(dqkvb),
                dl_qkv,
                a.ln1.layer(l, nl),
                p.qkvw.layer(l, nl),
                bt,
                c,
                3 * c,
            )?;
            let (ln1_mean, ln1_rstd) = (a.ln1_mean.layer(l, nl), a.ln1_rstd.layer(l, nl));
            let (dln1w, dln1b) = (gp.ln1w.layer(l, nl), gp.ln1b.layer(l, nl));
            let ln1w = p.ln1w.layer(l, nl);
            g.layernorm_backward(dresidual, dln1w, dln1b, dl_ln1, residual, ln1w, ln1_mean, ln1_rstd, bt, c)?;
        }

        // embeddings, backwards
        // SAFETY: these are the inputs of the last forward, checked against V <= Vp there.
        unsafe { g.encoder_backward(gp.wte, gp.wpe, ga.encoded, inputs, b, t, c) }
    }

    /// The global L2 norm of the gradients (waits for the queued work).
    pub fn grad_norm(&self) -> Result<f32> {
        self.gpu.global_norm(self.grads.all())
    }

    /// One AdamW update (`t` = 1, 2, ...) with gradients multiplied by `grad_scale`; as
    /// `adamw_update` in `src/optim.rs`, one launch per parameter tensor with its weight decay.
    pub fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) -> Result<()> {
        let beta1_correction = 1.0 - adamw.beta1.powi(t as i32);
        let beta2_correction = 1.0 - adamw.beta2.powi(t as i32);
        for i in 0..self.layout.shapes.len() {
            let range = self.layout.range(i);
            let (start, len) = (range.start, range.len());
            let wd = if adamw.decay_all || self.layout.decays(i) { adamw.weight_decay } else { 0.0 };
            self.gpu.adamw_update(
                self.params.all().slice(start, len),
                self.grads.all().slice(start, len),
                self.m.all().slice(start, len),
                self.v.all().slice(start, len),
                lr,
                adamw.beta1,
                adamw.beta2,
                beta1_correction,
                beta2_correction,
                adamw.eps,
                wd,
                grad_scale,
            )?;
        }
        Ok(())
    }

    /// A host copy of the parameters.
    pub fn params(&self) -> Result<Vec<f32>> {
        self.gpu.download(self.params.all())
    }

    /// A host copy of the parameter gradients.
    pub fn grads(&self) -> Result<Vec<f32>> {
        self.gpu.download(self.grads.all())
    }

    /// Replaces the parameter gradients (tests use this to check the optimizer alone).
    pub fn set_grads(&mut self, grads: &[f32]) -> Result<()> {
        self.gpu.upload(self.grads.all(), grads)
    }

    /// Host copies of AdamW's two moments.
    pub fn optimizer_state(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.gpu.download(self.m.all())?, self.gpu.download(self.v.all())?))
    }

    /// Replaces AdamW's two moments (from a checkpoint).
    pub fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]) -> Result<()> {
        self.gpu.upload(self.m.all(), m)?;
        self.gpu.upload(self.v.all(), v)
    }

    /// Replaces the parameters.
    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        self.gpu.upload(self.params.all(), params)
    }

    /// A host copy of the probabilities (B, T, Vp) of the last forward pass.
    pub fn probs(&self) -> Result<Vec<f32>> {
        let a = DevActivations::new(self.acts.all(), &activation_sizes(&self.config, self.b, self.t));
        self.gpu.download(a.probs)
    }
}
