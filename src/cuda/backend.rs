//! `CudaBackend`: GPT-2 on one GPU as a `Backend` of the training loop in `src/train.rs`.
//! Twin: `src/cpu/backend.rs`.

use super::context::{Gpu, Matmul};
use super::gpt2::CudaGpt2;
use super::PeakFlops;
use crate::config::ModelConfig;
use crate::optim::AdamWConfig;
use crate::train::Backend;
use anyhow::Result;

pub struct CudaBackend {
    pub model: CudaGpt2,
    peak: Option<PeakFlops>,
}

/// The `Backend` trait has no room for errors: a CUDA failure in the middle of training (a kernel
/// fault, a lost device) ends the run with its message.
fn ok<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("CUDA error: {e:#}"))
}

impl CudaBackend {
    /// GPT-2 with `params` on GPU `ordinal`, with buffers for micro-batches of up to (B, T).
    /// Call `crate::cuda::availability()` first.
    pub fn new(
        ordinal: usize,
        matmul: Matmul,
        config: ModelConfig,
        params: &[f32],
        b: usize,
        t: usize,
    ) -> Result<Self> {
        let gpu = Gpu::new(ordinal, matmul)?;
        let peak = super::peak_flops(&gpu.name);
        let model = CudaGpt2::new(gpu, config, params, b, t)?;
        Ok(CudaBackend { model, peak })
    }
}

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        let gpu = &self.model.gpu;
        let (major, minor) = gpu.compute_capability;
        let peak = match self.peak {
            Some(p) => format!("MFU against the {} fp32 non-tensor peak, {:.0} TFLOP/s", p.card, p.fp32 / 1e12),
            None => "no peak FLOP/s known for this card, so no MFU".to_string(),
        };
        format!(
            "{} (sm_{major}{minor}, {} SMs; fp32 kernels, matmul {:?}, compiled in {:.1} s; {peak})",
            gpu.name, gpu.num_sms, gpu.matmul, gpu.compile_seconds
        )
    }
    fn config(&self) -> &ModelConfig {
        &self.model.config
    }
    fn forward_backward(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize, loss_scale: f32) -> f32 {
        ok(self.model.forward(inputs, Some(targets), b, t));
        ok(self.model.backward(loss_scale));
        // the losses are not touched by the backward pass: read them after queueing it
        ok(self.model.mean_loss())
    }
    fn loss(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> f32 {
        ok(self.model.forward(inputs, Some(targets), b, t));
        ok(self.model.mean_loss())
    }
    fn position_losses(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Vec<f32> {
        ok(self.model.forward(inputs, Some(targets), b, t));
        ok(self.model.losses())
    }
    fn zero_grad(&mut self) {
        ok(self.model.zero_grad());
    }
    fn grad_norm(&mut self) -> f32 {
        ok(self.model.grad_norm())
    }
    fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) {
        ok(self.model.update(adamw, lr, t, grad_scale));
    }
    fn params(&mut self) -> Vec<f32> {
        ok(self.model.params())
    }
    fn optimizer_state(&mut self) -> (Vec<f32>, Vec<f32>) {
        ok(self.model.optimizer_state())
    }
    fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]) {
        ok(self.model.set_optimizer_state(m, v));
    }
    fn peak_flops(&self) -> Option<f64> {
        self.peak.map(|p| p.fp32)
    }
}
