//! Exercise 8: the AdamW update. Reference: `src/optim.rs`.
//! Judge: `cargo test --features exercise-adamw adamw -- --nocapture`

use crate::model::ParamLayout;
use crate::optim::AdamWConfig;

/// One AdamW update of every parameter (https://arxiv.org/abs/1711.05101), `t` = 1, 2, ... the
/// update's number, every gradient first multiplied by `grad_scale` (that is how clipping enters).
/// For each parameter p with gradient g:
///   m = beta1 m + (1 - beta1) g              (running mean of gradients)
///   v = beta2 v + (1 - beta2) g^2            (running mean of squared gradients)
///   m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)   (bias correction: m and v start at 0)
///   p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p)
///
/// Hints:
/// - The weight decay wd is `cfg.weight_decay` for the tensors that decay and 0 for the rest:
///   tensor i (`layout.range(i)` is its slice of the flat buffers) decays when
///   `cfg.decay_all || layout.decays(i)` (GPT-2 decays the 2-D weights only, not biases or layernorms).
/// - Decoupled decay: wd * p is added to the step, not to the gradient (that is the "W" in AdamW).
pub fn adamw_update(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    layout: &ParamLayout,
    cfg: &AdamWConfig,
    lr: f32,
    t: u64,
    grad_scale: f32,
) {
    todo!("exercise adamw_update: write it in exercises/adamw.rs (see EXERCISES.md)")
}
