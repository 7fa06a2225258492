//! Launch code for `kernels/adamw.cu`; the CPU twin is `adamw_update` in `src/optim.rs`.

use super::grid;
use crate::cuda::context::{Dev, Gpu};
use crate::cuda::storage::Bf16;
use anyhow::Result;

/// Threads per block of `adamw_update`: one thread per parameter.
pub const ADAMW_BLOCK: u32 = 256;

impl Gpu {
    /// One AdamW update of the parameters of one tensor (params, grads, m and v views of the same
    /// length), gradients first multiplied by `grad_scale`; see `adamw_update` in `src/optim.rs`.
    #[allow(clippy::too_many_arguments)]
    pub fn adamw_update(
        &self,
        params: Dev<f32>,
        grads: Dev<f32>,
        m: Dev<f32>,
        v: Dev<f32>,
        lr: f32,
        beta1: f32,
        beta2: f32,
        beta1_correction: f32,
        beta2_correction: f32,
        eps: f32,
        weight_decay: f32,
        grad_scale: f32,
    ) -> Result<()> {
        let n = params.len();
        assert!(grads.len() == n && m.len() == n && v.len() == n);
        let cfg = grid(n, ADAMW_BLOCK);
        let num_parameters = n as i64;
        let (params, grads, m, v) = (params.ptr(), grads.ptr(), m.ptr(), v.ptr());
        // SAFETY: all four hold num_parameters floats; one thread per index below it.
        unsafe {
            launch!(
                self,
                "adamw_update",
                cfg,
                params,
                grads,
                m,
                v,
                num_parameters,
                lr,
                beta1,
                beta2,
                beta1_correction,
                beta2_correction,
                eps,
                weight_decay,
                grad_scale
            )
        }
    }

    /// weights (N) = params (N) rounded to bf16 (nearest even): the bf16 copy the layers read,
    /// refreshed from the fp32 master after every update (`src/precision.rs`).
    pub fn refresh_bf16_weights(&self, weights: Dev<Bf16>, params: Dev<f32>) -> Result<()> {
        assert_eq!(weights.len(), params.len());
        let cfg = grid(params.len(), ADAMW_BLOCK);
        let num_parameters = params.len() as i64;
        let (weights, params) = (weights.ptr(), params.ptr());
        // SAFETY: both hold num_parameters numbers; one thread per index below it.
        unsafe { launch!(self, "refresh_bf16_weights", cfg, weights, params, num_parameters) }
    }
}
