//! The CPU model as a training `Backend` (`src/train.rs`): the forward and backward of `gpt2.rs`,
//! AdamW from `src/optim.rs`, the moments in host memory. Twin: `src/cuda/backend.rs`.

use crate::config::ModelConfig;
use crate::cpu::gpt2::Gpt2;
use crate::optim::{adamw_update, global_norm, AdamWConfig};
use crate::train::{Backend, StateVisitor};
use anyhow::{bail, Context, Result};

/// The CPU reference as a backend.
pub struct CpuBackend {
    pub model: Gpt2,
    m: Vec<f32>,
    v: Vec<f32>,
    /// Why the run is in its precision, when `--precision` was not given (the device line says it).
    pub precision_note: Option<String>,
}

impl CpuBackend {
    pub fn new(config: ModelConfig, params: Vec<f32>) -> Self {
        let n = params.len();
        CpuBackend { model: Gpt2::new(config, params), m: vec![0.0; n], v: vec![0.0; n], precision_note: None }
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        let why = self.precision_note.as_ref().map_or(String::new(), |why| format!(" ({why})"));
        let precision = match self.model.precision() {
            crate::precision::Precision::Fp32 if why.is_empty() => String::new(),
            crate::precision::Precision::Fp32 => format!(", fp32{why}"),
            crate::precision::Precision::Bf16 => format!(", bf16 mixed precision{why}"),
        };
        format!(
            "CPU ({} threads, {} layers{precision})",
            rayon::current_num_threads(),
            format!("{:?}", self.model.kernels).to_lowercase()
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
        let loss = self.loss(inputs, targets, b, t)?;
        self.model.backward(loss_scale);
        Ok(loss)
    }
    fn loss(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<f32> {
        // a forward pass with targets always has a loss
        self.model.forward(inputs, Some(targets), b, t).context("the forward pass returned no loss")
    }
    fn position_losses(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<Vec<f32>> {
        self.model.forward(inputs, Some(targets), b, t);
        Ok(self.model.losses().to_vec())
    }
    fn zero_grad(&mut self) -> Result<()> {
        self.model.zero_grad();
        Ok(())
    }
    fn grad_norm(&mut self) -> Result<f32> {
        Ok(global_norm(&self.model.grads))
    }
    fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) -> Result<()> {
        let model = &mut self.model;
        adamw_update(
            &mut model.params,
            &model.grads,
            &mut self.m,
            &mut self.v,
            &model.layout,
            adamw,
            lr,
            t,
            grad_scale,
        );
        // bf16 mode: the layers read a bf16 copy of the weights, derived from the new master weights
        model.refresh_bf16_weights();
        Ok(())
    }
    fn params(&mut self) -> Result<Vec<f32>> {
        Ok(self.model.params.clone())
    }
    fn optimizer_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.m.clone(), self.v.clone()))
    }
    fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]) -> Result<()> {
        let n = self.m.len();
        if m.len() != n || v.len() != n {
            bail!("AdamW state of {} and {} numbers for a model of {n} parameters", m.len(), v.len());
        }
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        Ok(())
    }
    fn with_state(&mut self, f: &mut StateVisitor) -> Result<()> {
        f(&self.model.params, &self.m, &self.v)
    }
}
