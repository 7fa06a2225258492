//! GPT-2 on the GPU: the kernels of `kernels/` composed into the whole model, forward and backward,
//! with AdamW and the gradient norm on the device. Twin: `src/cpu/gpt2.rs`, whose `forward` and
//! `backward` this file follows call for call.
//!
//! Parameters, gradients, AdamW's two moments, the activations and the activation gradients each
//! live in device buffers in the layouts of `src/model/mod.rs`, allocated once for the largest
//! batch, exactly as `src/memory.rs`'s plan lists them (`tests/cuda.rs` counts the bytes);
//! a step allocates nothing, and the only numbers that come back to the host are the losses (B*T
//! floats) and the gradient norm.
//!
//! Precision (`src/precision.rs`): the forward and backward passes are written once, generic over
//! the storage type `T` of the weights the layers read, the activations and their gradients (`f32`,
//! or `Bf16` in 16 bits: `storage.rs`). In bf16 the layers read a bf16 copy of the weights, refreshed
//! from the fp32 master after every update; the master weights, gradients, AdamW's moments and the
//! statistics (layernorm's mean and rstd, the log-sum-exps, the losses, attention's delta) are fp32
//! in both. A buffer that mixes the two kinds (the activations with their statistics) is allocated as
//! two, one of each type, so the bytes are those of the plan.

use super::context::{Dev, DeviceBuffer, Gpu, Matmul};
use super::storage::{to_f32s, Bf16, Storage};
use crate::config::ModelConfig;
use crate::memory::{largest_gpu_batch, Buffer, MemoryPlan, Precision, GPU_MEMORY_RESERVE};
use crate::model::{activation_sizes, gradient_sizes, Activations, Cut, Gradients, ParamLayout, Params};
use crate::optim::AdamWConfig;
use anyhow::{bail, Result};

/// The front of a device buffer, cut off tensor by tensor: the device side of `model::Cut`.
struct Rest<T> {
    buf: Dev<T>,
    at: usize,
}

impl<T> Rest<T> {
    fn new(buf: Dev<T>) -> Self {
        Rest { buf, at: 0 }
    }
    fn next(&mut self, len: usize) -> Dev<T> {
        self.at += len;
        self.buf.slice(self.at - len, len)
    }
}

impl<T> Cut<Dev<T>> for Rest<T> {
    fn stored(&mut self, len: usize) -> Dev<T> {
        self.next(len)
    }
    fn fp32(&mut self, len: usize) -> Dev<T> {
        self.next(len)
    }
}

/// Cuts the tensors of a list from two device buffers: those stored as `T` from one, the fp32
/// statistics and scratch from the other (the `F` tensors of `src/model/mod.rs`'s lists).
struct Cutter<T> {
    stored: Rest<T>,
    fp32: Rest<f32>,
}

impl<T> Cut<Dev<T>, Dev<f32>> for Cutter<T> {
    fn stored(&mut self, len: usize) -> Dev<T> {
        self.stored.next(len)
    }
    fn fp32(&mut self, len: usize) -> Dev<f32> {
        self.fp32.next(len)
    }
}

/// The 16 parameter tensors (or their gradients) on the device, stored as `T`: `model::Params`
/// of device views, cut in order from one buffer.
pub type DevParams<T> = Params<Dev<T>>;

impl<T> DevParams<T> {
    pub fn new(flat: Dev<T>, sizes: &[usize; 16]) -> Self {
        Params::cut(sizes, &mut Rest::new(flat))
    }
}

/// The 22 activation tensors on the device (`model::Activations`): what the forward stores, as
/// `T`, and the statistics, fp32 (the `narrowed` entries of `src/memory.rs`'s plan, and the others).
pub type DevActivations<T> = Activations<Dev<T>, Dev<f32>>;

impl<T> DevActivations<T> {
    /// The views, in `ACTIVATION_NAMES` order, each cut from `stored` or `fp32` by its kind.
    pub fn new(stored: Dev<T>, fp32: Dev<f32>, sizes: &[usize; 22]) -> Self {
        Activations::cut(sizes, &mut Cutter { stored: Rest::new(stored), fp32: Rest::new(fp32) })
    }
}

/// The 13 activation gradients on the device, the head's and one block's (`model::Gradients`):
/// stored as `T`, but for the fp32 scratch (the losses' gradients and attention's delta).
pub type DevGradients<T> = Gradients<Dev<T>, Dev<f32>>;

impl<T> DevGradients<T> {
    /// The views, in `GRADIENT_NAMES` order, each cut from `stored` or `fp32` by its kind.
    pub fn new(stored: Dev<T>, fp32: Dev<f32>, sizes: &[usize; 13]) -> Self {
        Gradients::cut(sizes, &mut Cutter { stored: Rest::new(stored), fp32: Rest::new(fp32) })
    }
}

/// Layer `l`'s part of a tensor stacked over `n` layers: (L, ...) -> (...). As in `src/cpu/gpt2.rs`.
fn at<T>(t: Dev<T>, l: usize, n: usize) -> Dev<T> {
    t.layer(l, n)
}

/// `at`, for a tensor the kernel writes: a device view is a plain handle, so this is `at` under the
/// CPU's name (where reading and writing borrow differently).
fn at_mut<T>(t: Dev<T>, l: usize, n: usize) -> Dev<T> {
    t.layer(l, n)
}

/// Block `l`'s input and output in the residual stream: the input is the embedding (`encoded`) for
/// the first block and block l-1's slice of `residual3` after that; the output is block l's slice.
fn block_residuals<T>(encoded: Dev<T>, residual3: Dev<T>, l: usize, nl: usize) -> (Dev<T>, Dev<T>) {
    let input = if l == 0 { encoded } else { residual3.layer(l - 1, nl) };
    (input, residual3.layer(l, nl))
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The buffers whose type is the precision's: the bf16 weight copy (bf16 only), the activations and
/// the activation gradients, each with its fp32 part (statistics, scratch).
struct Stored<T> {
    /// The weights the layers read: `None` in fp32 (they read the master parameters themselves).
    weights: Option<DeviceBuffer<T>>,
    acts: DeviceBuffer<T>,
    acts_fp32: DeviceBuffer<f32>,
    grad_acts: DeviceBuffer<T>,
    grad_acts_fp32: DeviceBuffer<f32>,
}

impl<T: Storage> Stored<T> {
    fn new(gpu: &Gpu, plan: &MemoryPlan) -> Result<Self> {
        let elements = |buffer, narrowed| plan.buffer_elements_narrowed(buffer, narrowed);
        let weights = match T::PRECISION {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(gpu.alloc(plan.buffer_elements(Buffer::WeightsBf16))?),
        };
        Ok(Stored {
            weights,
            acts: gpu.alloc(elements(Buffer::Acts, true))?,
            acts_fp32: gpu.alloc(elements(Buffer::Acts, false))?,
            grad_acts: gpu.alloc(elements(Buffer::GradActs, true))?,
            grad_acts_fp32: gpu.alloc(elements(Buffer::GradActs, false))?,
        })
    }
    fn activations(&self, cfg: &ModelConfig, b: usize, t: usize) -> DevActivations<T> {
        DevActivations::new(self.acts.all(), self.acts_fp32.all(), &activation_sizes(cfg, b, t))
    }
    fn gradients(&self, cfg: &ModelConfig, b: usize, t: usize) -> DevGradients<T> {
        DevGradients::new(self.grad_acts.all(), self.grad_acts_fp32.all(), &gradient_sizes(cfg, b, t))
    }
}

/// `Stored` in the model's precision.
enum Buffers {
    Fp32(Stored<f32>),
    Bf16(Stored<Bf16>),
}

pub struct CudaGpt2 {
    pub gpu: Gpu,
    pub config: ModelConfig,
    pub layout: ParamLayout,
    /// fp32, or bf16 mixed precision (`src/precision.rs`).
    pub precision: Precision,
    /// All parameters (the fp32 master), llm.c's order, and their gradients and AdamW moments in the
    /// same layout (fp32 in both precisions).
    params: DeviceBuffer<f32>,
    grads: DeviceBuffer<f32>,
    m: DeviceBuffer<f32>,
    v: DeviceBuffer<f32>,
    /// The bf16 weight copy (bf16 only), the activations of the last forward pass and the activation
    /// gradients (one block's and the head's), sized for (max_b, max_t).
    buffers: Buffers,
    inputs: DeviceBuffer<u32>,
    targets: DeviceBuffer<u32>,
    /// The batch shape the buffers were sized for.
    pub max_b: usize,
    pub max_t: usize,
    /// The batch shape of the last forward pass.
    b: usize,
    t: usize,
    has_targets: bool,
    /// Whether a backward pass has run since the last forward (it wrote dlogits over the logits).
    logits_hold_gradient: bool,
    /// Host copy of dlosses (all loss_scale / (B*T)), uploaded at each backward.
    dlosses: Vec<f32>,
}

impl CudaGpt2 {
    /// The model with parameters `params` (the flat buffer of `ParamLayout::new(&config)`), with
    /// buffers for batches up to (max_b, max_t), computing in `precision`. Fails with the largest
    /// batch that fits when the device has too little free memory.
    pub fn new(
        gpu: Gpu,
        config: ModelConfig,
        params: &[f32],
        max_b: usize,
        max_t: usize,
        precision: Precision,
    ) -> Result<Self> {
        let layout = ParamLayout::new(&config);
        if params.len() != layout.total {
            bail!("parameter buffer of {} numbers does not match the config's {}", params.len(), layout.total);
        }
        if max_t > config.max_seq_len {
            bail!("sequence length {max_t} exceeds the model's maximum {}", config.max_seq_len);
        }
        if precision == Precision::Bf16 && gpu.matmul == Matmul::Cublas && !config.channels.is_multiple_of(8) {
            // every bias and pre-GELU tensor then starts at a multiple of 8 bf16 numbers, 16 bytes
            bail!(
                "--matmul cublas in bf16 (cuBLASLt) needs the channels C to be a multiple of 8, for the 16-byte \
                 aligned bias and pre-GELU vectors its epilogues read and write; this model has C = {}: use \
                 --matmul handwritten",
                config.channels
            );
        }
        // every buffer below comes from the plan, which `gpt2 memory` prints
        let plan = MemoryPlan::new(&config, max_b, max_t, precision)
            .ok_or_else(|| anyhow::anyhow!("B={max_b} T={max_t}: the buffers would need more than 2^64 bytes"))?;
        let (free, total) = gpu.memory()?;
        let needed = plan.total_bytes();
        if needed.saturating_add(GPU_MEMORY_RESERVE) > free {
            let p = 4 * plan.buffer_elements(Buffer::Params) * 4;
            let fits = largest_gpu_batch(&config, max_t, free, max_b, precision);
            bail!(
                "B={max_b} T={max_t} in {precision} needs {:.1} GiB of GPU memory ({:.1} GiB for parameters, gradients \
                 and AdamW's two moments, {:.1} GiB for the bf16 weight copy, activations, their gradients and \
                 scratch; `gpt2 memory` lists them) plus {:.1} GiB spare, but {} has {:.1} of {:.1} GiB free; {}",
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
        let elements = |buffer: Buffer| plan.buffer_elements(buffer);
        let mut gpu = gpu;
        gpu.reserve_matmul_scratch(elements(Buffer::MatmulScratch))?;
        let buffers = match precision {
            Precision::Fp32 => Buffers::Fp32(Stored::new(&gpu, &plan)?),
            Precision::Bf16 => Buffers::Bf16(Stored::new(&gpu, &plan)?),
        };
        let mut model = CudaGpt2 {
            params: gpu.alloc(elements(Buffer::Params))?,
            grads: gpu.alloc(elements(Buffer::Grads))?,
            m: gpu.alloc(elements(Buffer::AdamM))?,
            v: gpu.alloc(elements(Buffer::AdamV))?,
            buffers,
            inputs: gpu.alloc(elements(Buffer::Inputs))?,
            targets: gpu.alloc(elements(Buffer::Targets))?,
            gpu,
            config,
            layout,
            precision,
            max_b,
            max_t,
            b: 0,
            t: 0,
            has_targets: false,
            logits_hold_gradient: false,
            dlosses: Vec::new(),
        };
        model.set_params(params)?;
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
    pub fn forward(&mut self, host_inputs: &[u32], host_targets: Option<&[u32]>, b: usize, t: usize) -> Result<()> {
        let cfg = self.config;
        if b * t == 0 || host_inputs.len() != b * t || host_targets.is_some_and(|x| x.len() != b * t) {
            bail!("a batch of B={b} T={t} needs B*T > 0 input (and target) tokens, got {}", host_inputs.len());
        }
        if t > self.max_t || b * t > self.max_b * self.max_t {
            bail!("batch B={b} T={t} is larger than the buffers allocated for B={} T={}", self.max_b, self.max_t);
        }
        self.check_tokens(host_inputs, "input")?;
        if let Some(host) = host_targets {
            self.check_tokens(host, "target")?;
        }
        let (bt, gpu) = (b * t, &self.gpu);
        self.b = b;
        self.t = t;
        self.has_targets = host_targets.is_some();
        self.logits_hold_gradient = false;
        // from here on, `inputs` and `targets` are the device copies
        let inputs = self.inputs.all().slice(0, bt);
        gpu.upload(inputs, host_inputs)?;
        let targets = match host_targets {
            Some(host) => {
                let targets = self.targets.all().slice(0, bt);
                gpu.upload(targets, host)?;
                Some(targets)
            }
            None => None,
        };
        let sizes = self.layout.sizes();
        match &self.buffers {
            Buffers::Fp32(s) => {
                let p = DevParams::new(self.params.all(), &sizes);
                forward(gpu, &cfg, p, s.activations(&cfg, b, t), inputs, targets, b, t)
            }
            Buffers::Bf16(s) => {
                let p = DevParams::new(bf16_weights(s)?, &sizes);
                forward(gpu, &cfg, p, s.activations(&cfg, b, t), inputs, targets, b, t)
            }
        }
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
        let (cfg, b, t) = (&self.config, self.b, self.t);
        let losses = match &self.buffers {
            Buffers::Fp32(s) => s.activations(cfg, b, t).losses,
            Buffers::Bf16(s) => s.activations(cfg, b, t).losses,
        };
        self.gpu.download(losses)
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
        if self.logits_hold_gradient {
            bail!("backward needs a new forward pass: the last backward wrote the logits' gradient over the logits");
        }
        let cfg = self.config;
        let (b, t) = (self.b, self.t);
        let bt = b * t;
        let sizes = self.layout.sizes();
        let gp = DevParams::new(self.grads.all(), &sizes);
        let (inputs, targets) = (self.inputs.all().slice(0, bt), self.targets.all().slice(0, bt));
        // d(mean loss)/d(loss at each position) = loss_scale/(B*T)
        self.dlosses.clear();
        self.dlosses.resize(bt, loss_scale / bt as f32);
        let gpu = &self.gpu;
        match &self.buffers {
            Buffers::Fp32(s) => {
                let (p, a, ga) =
                    (DevParams::new(self.params.all(), &sizes), s.activations(&cfg, b, t), s.gradients(&cfg, b, t));
                gpu.upload(ga.losses, &self.dlosses)?;
                backward(gpu, &cfg, p, gp, a, ga, inputs, targets, b, t)?;
            }
            Buffers::Bf16(s) => {
                let (p, a, ga) =
                    (DevParams::new(bf16_weights(s)?, &sizes), s.activations(&cfg, b, t), s.gradients(&cfg, b, t));
                gpu.upload(ga.losses, &self.dlosses)?;
                backward(gpu, &cfg, p, gp, a, ga, inputs, targets, b, t)?;
            }
        }
        self.logits_hold_gradient = true;
        Ok(())
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
        // bf16: the layers read the bf16 copy, which follows the master
        self.refresh_bf16_weights()
    }

    /// In bf16, rounds the fp32 master weights into the bf16 copy the layers read (after every
    /// update and upload of the parameters); in fp32 there is no copy and nothing to do.
    fn refresh_bf16_weights(&self) -> Result<()> {
        match &self.buffers {
            Buffers::Fp32(_) => Ok(()),
            Buffers::Bf16(s) => self.gpu.refresh_bf16_weights(bf16_weights(s)?, self.params.all()),
        }
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

    /// Replaces the parameters (the fp32 master; in bf16 the copy the layers read follows).
    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        self.gpu.upload(self.params.all(), params)?;
        self.refresh_bf16_weights()
    }

    /// A host copy of the logits (B, T, Vp) of the last forward pass (after a backward: their
    /// gradient), as f32s (in bf16: exactly the bf16 numbers stored).
    pub fn logits(&self) -> Result<Vec<f32>> {
        let (cfg, b, t) = (&self.config, self.b, self.t);
        match &self.buffers {
            Buffers::Fp32(s) => self.gpu.download(s.activations(cfg, b, t).logits),
            Buffers::Bf16(s) => Ok(to_f32s(&self.gpu.download(s.activations(cfg, b, t).logits)?)),
        }
    }
}

/// The bf16 weight copy of a bf16 model.
fn bf16_weights(s: &Stored<Bf16>) -> Result<Dev<Bf16>> {
    s.weights.as_ref().map(|w| w.all()).ok_or_else(|| anyhow::anyhow!("a bf16 model without its bf16 weight copy"))
}

/// The forward pass of `CudaGpt2::forward`, for activations stored as `T`, reading the weights `p`
/// (the fp32 master, or the bf16 copy).
#[allow(clippy::too_many_arguments)]
fn forward<T: Storage>(
    gpu: &Gpu,
    cfg: &ModelConfig,
    p: DevParams<T>,
    a: DevActivations<T>,
    inputs: Dev<u32>,
    targets: Option<Dev<u32>>,
    b: usize,
    t: usize,
) -> Result<()> {
    let (nl, nh, c, v, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size);
    let bt = b * t;
    // [twin: forward]
    // token embedding + position embedding
    // encoded (B,T,C) <- token ids (B,T), wte (Vp,C), wpe (maxT,C)
    // SAFETY: the tokens were checked against V <= Vp (the rows of wte) by `CudaGpt2::forward`.
    unsafe { gpu.encoder_forward(a.encoded, inputs, p.wte, p.wpe, b, t, c)? };

    for l in 0..nl {
        // the residual stream entering block l (the embedding, or block l-1's output), and block l's output
        let (residual, l_residual3) = block_residuals(a.encoded, a.residual3, l, nl);

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
        let (l_attproj, l_residual2) = (a.attproj, at_mut(a.residual2, l, nl));
        let (l_ln2, l_ln2_mean, l_ln2_rstd) =
            (at_mut(a.ln2, l, nl), at_mut(a.ln2_mean, l, nl), at_mut(a.ln2_rstd, l, nl));
        let (l_fch, l_fch_gelu, l_fcproj) = (at_mut(a.fch, l, nl), at_mut(a.fch_gelu, l, nl), a.fcproj);

        // attention: layernorm -> qkv projection -> causal self-attention -> output projection -> residual
        // ln1 (B,T,C), ln1_mean and ln1_rstd (B,T) <- residual (B,T,C)
        gpu.layernorm_forward(l_ln1, l_ln1_mean, l_ln1_rstd, residual, l_ln1w, l_ln1b, bt, c)?;
        // qkv (B,T,3C) <- ln1 (B,T,C) @ qkvw^T (3C,C) + qkvb (3C)
        gpu.matmul_forward(l_qkv, l_ln1, l_qkvw, Some(l_qkvb), bt, c, 3 * c)?;
        // atty (B,T,C), att_lse (B,NH,T) <- qkv (B,T,3C)
        gpu.attention_forward(l_atty, l_att_lse, l_qkv, b, t, c, nh)?;
        // attproj (B,T,C) <- atty (B,T,C) @ attprojw^T (C,C) + attprojb (C)
        gpu.matmul_forward(l_attproj, l_atty, l_attprojw, Some(l_attprojb), bt, c, c)?;
        // residual2 (B,T,C) = residual + attproj
        gpu.residual_forward(l_residual2, residual, l_attproj)?;

        // MLP: layernorm -> fc (C -> 4C) -> GELU -> projection (4C -> C) -> residual
        // ln2 (B,T,C), ln2_mean and ln2_rstd (B,T) <- residual2 (B,T,C)
        gpu.layernorm_forward(l_ln2, l_ln2_mean, l_ln2_rstd, l_residual2, l_ln2w, l_ln2b, bt, c)?;
        // fch (B,T,4C) <- ln2 (B,T,C) @ fcw^T (4C,C) + fcb (4C), then fch_gelu (B,T,4C) = gelu(fch)
        // (one call: cuBLASLt fuses the GELU into the matmul)
        gpu.matmul_gelu_forward(l_fch, l_fch_gelu, l_ln2, l_fcw, Some(l_fcb), bt, c, 4 * c)?;
        // fcproj (B,T,C) <- fch_gelu (B,T,4C) @ fcprojw^T (C,4C) + fcprojb (C)
        gpu.matmul_forward(l_fcproj, l_fch_gelu, l_fcprojw, Some(l_fcprojb), bt, 4 * c, c)?;
        // residual3 (B,T,C) = residual2 + fcproj
        gpu.residual_forward(l_residual3, l_residual2, l_fcproj)?;
    }

    // final layernorm, then the LM head: logits against every token embedding (weights tied)
    let residual = at(a.residual3, nl - 1, nl);
    // lnf (B,T,C), lnf_mean and lnf_rstd (B,T) <- the last block's residual3 (B,T,C)
    gpu.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, p.lnfw, p.lnfb, bt, c)?;
    // logits (B,T,Vp) <- lnf (B,T,C) @ wte^T (C,Vp)
    gpu.matmul_forward(a.logits, a.lnf, p.wte, None, bt, c, vp)?;

    // the loss: cross-entropy against the targets, through the softmax over the first V logits
    // (no probabilities are stored: see softmax_crossentropy)
    if let Some(targets) = targets {
        // losses (B,T) = logsumexp(logits) - logits[target]; logits_lse (B,T) = logsumexp(logits)
        // SAFETY: the targets were checked against V <= Vp by `CudaGpt2::forward`.
        unsafe { gpu.crossentropy_forward(a.losses, a.logits_lse, a.logits, targets, bt, v, vp)? };
    }
    // [end twin]
    Ok(())
}

/// The backward pass of `CudaGpt2::backward`, for activations and their gradients stored as `T`,
/// reading the weights `p` and adding into the fp32 parameter gradients `gp`; `ga.losses` holds dlosses.
#[allow(clippy::too_many_arguments)]
fn backward<T: Storage>(
    gpu: &Gpu,
    cfg: &ModelConfig,
    p: DevParams<T>,
    gp: DevParams<f32>,
    a: DevActivations<T>,
    ga: DevGradients<T>,
    inputs: Dev<u32>,
    targets: Dev<u32>,
    b: usize,
    t: usize,
) -> Result<()> {
    let (nl, nh, c, v, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size);
    let bt = b * t;
    // [twin: backward]
    // The activation gradients live in one set of buffers for the head and one for a block, which
    // every block reuses (`model::GRADIENT_NAMES`). The layers add (+=) into them, so each is
    // cleared before the first layer that adds into it. The logits' gradient is written over the
    // logits, which nothing needs after it.
    gpu.zero(ga.lnf)?;
    gpu.zero(ga.residual)?;

    // the loss and the LM head, backwards
    // dlogits (B,T,Vp), written over the logits <- dlosses (B,T), logits_lse (B,T), targets
    gpu.crossentropy_softmax_backward(a.logits, ga.losses, a.logits_lse, targets, bt, v, vp)?;
    // dlnf (B,T,C), dwte (Vp,C) += from dlogits (B,T,Vp), in the logits' buffer
    gpu.matmul_backward(ga.lnf, gp.wte, None, a.logits, a.lnf, p.wte, bt, c, vp)?;
    let residual = at(a.residual3, nl - 1, nl);
    // dresidual (B,T,C), the gradient of the last residual3, dlnfw and dlnfb (C) += from dlnf (B,T,C)
    gpu.layernorm_backward(ga.residual, gp.lnfw, gp.lnfb, ga.lnf, residual, p.lnfw, a.lnf_mean, a.lnf_rstd, bt, c)?;

    for l in (0..nl).rev() {
        // the residual stream that entered block l
        let (residual, _) = block_residuals(a.encoded, a.residual3, l, nl);

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
        let (dl_ln1, dl_qkv, dl_atty) = (ga.ln1, ga.qkv, ga.atty);
        let (dl_delta, dl_attproj, dl_residual2) = (ga.att_delta, ga.attproj, ga.residual2);
        let (dl_ln2, dl_fch) = (ga.ln2, ga.fch);
        let (dl_fch_gelu, dl_fcproj) = (ga.fch_gelu, ga.fcproj);
        for grad in [dl_ln1, dl_qkv, dl_atty, dl_attproj, dl_residual2, dl_ln2, dl_fch, dl_fch_gelu, dl_fcproj] {
            gpu.zero(grad)?;
        }
        // the gradient of the residual stream: of block l's output (residual3) here
        let dresidual = ga.residual;

        // MLP, backwards: the forward's calls in reverse order
        // dresidual2 and dfcproj (B,T,C) += dresidual (B,T,C)
        gpu.residual_backward(dl_residual2, dl_fcproj, dresidual)?;
        // dfch_gelu (B,T,4C), dfcprojw (C,4C), dfcprojb (C) += from dfcproj (B,T,C)
        gpu.matmul_backward(dl_fch_gelu, dl_fcprojw, Some(dl_fcprojb), dl_fcproj, l_fch_gelu, l_fcprojw, bt, 4 * c, c)?;
        // dfch (B,T,4C) += gelu'(fch) * dfch_gelu
        gpu.gelu_backward(dl_fch, l_fch, dl_fch_gelu)?;
        // dln2 (B,T,C), dfcw (4C,C), dfcb (4C) += from dfch (B,T,4C)
        gpu.matmul_backward(dl_ln2, dl_fcw, Some(dl_fcb), dl_fch, l_ln2, l_fcw, bt, c, 4 * c)?;
        // dresidual2 (B,T,C), dln2w and dln2b (C) += from dln2 (B,T,C)
        gpu.layernorm_backward(
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
        )?;

        // attention, backwards
        // the stream's gradient buffer now takes the gradient of block l's input: clear it
        gpu.zero(dresidual)?;
        // dresidual and dattproj (B,T,C) += dresidual2 (B,T,C)
        gpu.residual_backward(dresidual, dl_attproj, dl_residual2)?;
        // datty (B,T,C), dattprojw (C,C), dattprojb (C) += from dattproj (B,T,C)
        gpu.matmul_backward(dl_atty, dl_attprojw, Some(dl_attprojb), dl_attproj, l_atty, l_attprojw, bt, c, c)?;
        // dqkv (B,T,3C) += from datty (B,T,C), the scores recomputed from qkv and att_lse (delta: scratch)
        gpu.attention_backward(dl_qkv, dl_delta, dl_atty, l_qkv, l_atty, l_att_lse, b, t, c, nh)?;
        // dln1 (B,T,C), dqkvw (3C,C), dqkvb (3C) += from dqkv (B,T,3C)
        gpu.matmul_backward(dl_ln1, dl_qkvw, Some(dl_qkvb), dl_qkv, l_ln1, l_qkvw, bt, c, 3 * c)?;
        // dresidual (B,T,C), dln1w and dln1b (C) += from dln1 (B,T,C)
        gpu.layernorm_backward(dresidual, dl_ln1w, dl_ln1b, dl_ln1, residual, l_ln1w, l_ln1_mean, l_ln1_rstd, bt, c)?;
    }

    // embeddings, backwards
    // dwte (Vp,C), dwpe (maxT,C) += from dresidual (B,T,C), now the gradient of the embedding
    // SAFETY: these are the inputs of the last forward, checked against V <= Vp there.
    unsafe { gpu.encoder_backward(gp.wte, gp.wpe, ga.residual, inputs, b, t, c)? };
    // [end twin]
    Ok(())
}
