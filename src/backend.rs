//! The ground floor: what a device must do for the training loop (`Backend`), and the types the
//! devices share with it. It imports neither `cpu` nor `cuda` nor `train`: the CPU
//! (`src/cpu/backend.rs`) and CUDA (`src/cuda/backend.rs`) implement it side by side, the loop
//! (`src/train/`) drives it, and `src/device.rs` picks which one runs.

use crate::config::ModelConfig;
use crate::optim::AdamWConfig;
use anyhow::Result;

/// A function given (params, m, v), as `Backend::with_state` lends them.
pub type StateVisitor<'a> = dyn FnMut(&[f32], &[f32], &[f32]) -> Result<()> + 'a;

/// What a device must do for the training loop.
///
/// Every method that touches the device returns a `Result`: on the CPU it is always `Ok`, on a GPU
/// a failed kernel launch or copy (a fault, a lost device, memory gone) comes back as an error that
/// names what failed, and the loop ends the run with it instead of panicking.
pub trait Backend {
    /// One line naming the device, for the console.
    fn describe(&self) -> String;
    fn config(&self) -> &ModelConfig;
    /// Forward and backward of one micro-batch, adding the gradient of `loss_scale * loss` to the
    /// parameter gradients; returns the mean loss.
    fn forward_backward(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize, loss_scale: f32)
        -> Result<f32>;
    /// The mean loss of a batch, without gradients.
    fn loss(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<f32>;
    /// The B*T per-position losses of a batch, without gradients (HellaSwag scores endings with them).
    fn position_losses(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<Vec<f32>>;
    fn zero_grad(&mut self) -> Result<()>;
    /// The global L2 norm of the gradients.
    fn grad_norm(&mut self) -> Result<f32>;
    /// One AdamW update (`t` = 1, 2, ...) with gradients multiplied by `grad_scale`.
    fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) -> Result<()>;
    /// Copies of the parameters and of AdamW's two moments, for checkpoints.
    fn params(&mut self) -> Result<Vec<f32>>;
    fn optimizer_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)>;
    fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]) -> Result<()>;
    /// Calls `f` with the parameters and AdamW's moments m and v, for writing a checkpoint. The CPU
    /// lends its own buffers (no copy of a model that may be most of memory); a GPU copies to the host.
    fn with_state(&mut self, f: &mut StateVisitor) -> Result<()> {
        let params = self.params()?;
        let (m, v) = self.optimizer_state()?;
        f(&params, &m, &v)
    }
    /// The device's peak FLOP/s for the precision and path it runs, when known: the console then
    /// shows MFU (model FLOPs utilization, `ModelConfig::flops_per_token` x tokens/s over this peak),
    /// and the log names the peak beside it.
    fn mfu_peak(&self) -> Option<Peak> {
        None
    }
    /// Starts timing each kernel launch (a GPU's; `bench --device cuda` prints the table). The CPU
    /// does nothing here: `bench` times its layers one by one instead.
    fn start_profile(&mut self) {}
    /// Ends what `start_profile` started: the time of each kernel since then, summed by name, or
    /// `None` for a backend that does not profile.
    fn finish_profile(&mut self) -> Result<Option<Vec<KernelTime>>> {
        Ok(None)
    }
}

/// The peak a run's MFU is measured against, and what it is the peak of.
#[derive(Clone, Debug, PartialEq)]
pub struct Peak {
    pub flops: f64,
    /// The card, precision and path, e.g. "H200 bf16 dense 989 TFLOP/s".
    pub name: String,
}

/// One row of a kernel profile: a kernel (or cuBLAS call), how often it ran, its total time.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: String,
    pub calls: usize,
    pub ms: f64,
}

/// Sums `(name, ms)` samples by name, in the order names first appear.
pub fn sum_by_name(samples: impl IntoIterator<Item = (String, f64)>) -> Vec<KernelTime> {
    let mut rows: Vec<KernelTime> = Vec::new();
    for (name, ms) in samples {
        match rows.iter_mut().find(|r| r.name == name) {
            Some(row) => {
                row.calls += 1;
                row.ms += ms;
            }
            None => rows.push(KernelTime { name, calls: 1, ms }),
        }
    }
    rows
}
