//! `CudaBackend`: GPT-2 on one GPU as a `Backend` of the training loop in `src/train.rs`.
//! Twin: `src/cpu/backend.rs`.

use super::context::{Gpu, Matmul};
use super::gpt2::CudaGpt2;
use super::peak::{find_card, peak, Card};
use crate::config::ModelConfig;
use crate::optim::AdamWConfig;
use crate::precision::Precision;
use crate::train::Backend;
use anyhow::{Context, Result};

pub struct CudaBackend {
    pub model: CudaGpt2,
    /// The card's row of the peak table and its share of the card's SMs, or why it has none.
    card: Result<(Card, f64), String>,
    /// Why the run is in its precision, when `--precision` was not given (the device line says it).
    pub precision_note: Option<String>,
}

impl CudaBackend {
    /// GPT-2 with `params` on GPU `ordinal`, with buffers for micro-batches of up to (B, T), training
    /// in `precision` (`src/precision.rs`). Call `crate::cuda::availability()` first.
    pub fn new(
        ordinal: usize,
        matmul: Matmul,
        precision: Precision,
        config: ModelConfig,
        params: &[f32],
        b: usize,
        t: usize,
    ) -> Result<Self> {
        let gpu = Gpu::new(ordinal, matmul)?;
        let card = find_card(&gpu.name, gpu.compute_capability, gpu.num_sms);
        let model = CudaGpt2::new(gpu, config, params, b, t, precision)?;
        Ok(CudaBackend { model, card, precision_note: None })
    }

    /// The peak MFU is measured against: the card's, for the precision and matmul running now
    /// (`src/cuda/peak.rs`); or why there is none.
    pub fn peak(&self) -> Result<super::peak::Peak, String> {
        let (card, share) = self.card.clone()?;
        Ok(peak(&card, share, self.model.precision, self.model.gpu.matmul))
    }
}

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        let gpu = &self.model.gpu;
        let (major, minor) = gpu.compute_capability;
        let peak = match self.peak() {
            Ok(p) => format!("mfu of {}", p.name),
            Err(why) => why,
        };
        let why = self.precision_note.as_ref().map_or(String::new(), |why| format!(" ({why})"));
        format!(
            "{} (sm_{major}{minor}, {} SMs; {} kernels{why}, matmul {:?}, compiled in {:.1} s; {peak})",
            gpu.name, gpu.num_sms, self.model.precision, gpu.matmul, gpu.compile_seconds
        )
    }
    fn config(&self) -> &ModelConfig {
        &self.model.config
    }
    fn forward_backward(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        b: usize,
        t: usize,
        loss_scale: f32,
    ) -> Result<f32> {
        self.model.forward(inputs, Some(targets), b, t).context("GPU forward pass")?;
        self.model.backward(loss_scale).context("GPU backward pass")?;
        // the losses are not touched by the backward pass: read them after queueing it
        self.model.mean_loss().context("GPU loss")
    }
    fn loss(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<f32> {
        self.model.forward(inputs, Some(targets), b, t).context("GPU forward pass")?;
        self.model.mean_loss().context("GPU loss")
    }
    fn position_losses(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<Vec<f32>> {
        self.model.forward(inputs, Some(targets), b, t).context("GPU forward pass")?;
        self.model.losses().context("GPU losses")
    }
    fn zero_grad(&mut self) -> Result<()> {
        self.model.zero_grad().context("zeroing the GPU's gradients")
    }
    fn grad_norm(&mut self) -> Result<f32> {
        self.model.grad_norm().context("GPU gradient norm")
    }
    fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) -> Result<()> {
        self.model.update(adamw, lr, t, grad_scale).context("GPU AdamW update")
    }
    fn params(&mut self) -> Result<Vec<f32>> {
        self.model.params().context("copying the parameters from the GPU")
    }
    fn optimizer_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.model.optimizer_state().context("copying AdamW's state from the GPU")
    }
    fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]) -> Result<()> {
        self.model.set_optimizer_state(m, v).context("copying AdamW's state to the GPU")
    }
    fn mfu_peak(&self) -> Option<crate::backend::Peak> {
        self.peak().ok()
    }
    fn start_profile(&mut self) {
        self.model.gpu.start_profile();
    }
    fn finish_profile(&mut self) -> Result<Option<Vec<crate::cuda::KernelTime>>> {
        self.model.gpu.finish_profile().context("reading the kernel profile").map(Some)
    }
}
