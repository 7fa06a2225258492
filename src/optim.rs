//! AdamW (https://arxiv.org/abs/1711.05101), the learning-rate schedule and gradient clipping.
//! Twin: `kernels/adamw.cu` and `kernels/global_norm.cu`.

// (with `--features exercise-adamw` the learner's `adamw_update` replaces the one that uses these)
#[cfg_attr(feature = "exercise-adamw", allow(unused_imports))]
use crate::model::ParamLayout;
use rayon::prelude::*;

/// AdamW's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Decay every parameter (llm.c's CPU trainer) instead of only the 2-D weights (GPT-2's recipe).
    pub decay_all: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, decay_all: false }
    }
}

/// One AdamW update of every parameter, with `t` = 1, 2, ... the update's number (for bias correction)
/// and every gradient first multiplied by `grad_scale` (gradient clipping).
///   m = beta1 m + (1 - beta1) g          (running mean of gradients)
///   v = beta2 v + (1 - beta2) g^2        (running mean of squared gradients)
///   p -= lr (m / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps) + wd p)
#[cfg(not(feature = "exercise-adamw"))]
#[allow(clippy::too_many_arguments)]
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
    let beta1_correction = 1.0 - cfg.beta1.powi(t as i32);
    let beta2_correction = 1.0 - cfg.beta2.powi(t as i32);
    for i in 0..layout.shapes.len() {
        let range = layout.range(i);
        let wd = if cfg.decay_all || layout.decays(i) { cfg.weight_decay } else { 0.0 };
        let (p, g) = (&mut params[range.clone()], &grads[range.clone()]);
        let (m, v) = (&mut m[range.clone()], &mut v[range]);
        p.par_iter_mut().zip(g.par_iter()).zip(m.par_iter_mut()).zip(v.par_iter_mut()).for_each(|(((p, &g), m), v)| {
            let g = g * grad_scale;
            *m = cfg.beta1 * *m + (1.0 - cfg.beta1) * g;
            *v = cfg.beta2 * *v + (1.0 - cfg.beta2) * g * g;
            let m_hat = *m / beta1_correction;
            let v_hat = *v / beta2_correction;
            *p -= lr * (m_hat / (v_hat.sqrt() + cfg.eps) + wd * *p);
        });
    }
}

// With `--features exercise-adamw`, your version from `exercises/adamw.rs` takes this one's place
// everywhere in the crate, and the gradient checks judge it: see EXERCISES.md.
#[cfg(feature = "exercise-adamw")]
pub use crate::exercises::adamw::adamw_update;

/// The L2 norm of all gradients together, accumulated in f64 so 124M squares add up exactly enough.
pub fn global_norm(grads: &[f32]) -> f32 {
    grads.par_chunks(1 << 16).map(|c| c.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>()).sum::<f64>().sqrt()
        as f32
}

/// The factor gradients are multiplied by so their global norm is at most `max_norm` (0 = no clipping).
pub fn clip_scale(norm: f32, max_norm: f32) -> f32 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / norm
    } else {
        1.0
    }
}

/// How the learning rate moves over training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Linear warmup, then cosine decay to `min_lr_frac * lr` at the last step (step `total_steps - 1`).
    Cosine,
    /// Linear warmup, then constant.
    Constant,
}

impl crate::choice::Choice for Schedule {
    const WHAT: &'static str = "schedule";
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (Schedule::Cosine, "cosine", "linear warmup, then cosine decay to min_lr_frac x lr at the last step"),
        (Schedule::Constant, "constant", "linear warmup, then constant"),
    ];
}

/// The learning rate of step `step` (0-based) of `total_steps`.
pub fn learning_rate(
    schedule: Schedule,
    lr: f32,
    step: usize,
    warmup: usize,
    total_steps: usize,
    min_lr_frac: f32,
) -> f32 {
    if step < warmup {
        // linear warmup from lr/warmup to lr
        return lr * (step + 1) as f32 / warmup as f32;
    }
    match schedule {
        Schedule::Constant => lr,
        Schedule::Cosine => {
            let min_lr = lr * min_lr_frac;
            // progress runs from 0 at the first step after warmup to 1 at the last step
            let decay_steps = total_steps.saturating_sub(warmup + 1).max(1);
            let progress = ((step - warmup) as f32 / decay_steps as f32).min(1.0);
            let coeff = 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()); // 1 -> 0
            min_lr + coeff * (lr - min_lr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn schedule_warms_up_linearly_then_decays_to_the_floor() {
        // 10 warmup steps, then steps 10..=110 decay: the last step, 110, is at the floor
        let s = |step| learning_rate(Schedule::Cosine, 1.0, step, 10, 111, 0.1);
        assert_abs_diff_eq!(s(0), 0.1, epsilon = 1e-6);
        assert_abs_diff_eq!(s(9), 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(s(10), 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(s(60), 0.55, epsilon = 1e-6); // halfway down
        assert_abs_diff_eq!(s(110), 0.1, epsilon = 1e-6);
        assert!((10..110).all(|i| s(i + 1) < s(i)), "decreasing");
        assert_eq!(learning_rate(Schedule::Constant, 0.5, 50, 10, 100, 0.0), 0.5);
    }

    #[test]
    fn clipping_scales_only_norms_above_the_limit() {
        assert_eq!(clip_scale(0.5, 1.0), 1.0);
        assert_eq!(clip_scale(4.0, 1.0), 0.25);
        assert_eq!(clip_scale(4.0, 0.0), 1.0);
        assert_abs_diff_eq!(global_norm(&[3.0, 4.0]), 5.0, epsilon = 1e-6);
    }

    /// AdamW by hand, lr 0.1, betas (0.9, 0.95), eps 1e-8, weight decay 0.1, every parameter 1.0:
    ///
    /// t = 1, g = 0.5:   m = 0.1 * 0.5 = 0.05          v = 0.05 * 0.25 = 0.0125
    ///                   m_hat = 0.05 / (1 - 0.9) = 0.5    v_hat = 0.0125 / (1 - 0.95) = 0.25
    ///                   step = m_hat / (sqrt(v_hat) + eps) = 0.5 / 0.5 = 1 (less 2e-8)
    ///   decayed:        p = 1 - 0.1 * (1 + 0.1 * 1)      = 0.89
    ///   not decayed:    p = 1 - 0.1 * 1                  = 0.9
    /// t = 2, g = -0.25: m = 0.9 * 0.05 + 0.1 * -0.25 = 0.02      v = 0.95 * 0.0125 + 0.05 * 0.0625 = 0.015
    ///                   m_hat = 0.02 / (1 - 0.81) = 0.1052632   v_hat = 0.015 / (1 - 0.9025) = 0.1538462
    ///                   step = 0.1052632 / sqrt(0.1538462) = 0.2683694
    ///   decayed:        p = 0.89 - 0.1 * (0.2683694 + 0.1 * 0.89) = 0.8542631
    ///   not decayed:    p = 0.9 - 0.1 * 0.2683694                = 0.8731631
    #[test]
    fn adamw_matches_a_hand_computed_update_with_and_without_decay() {
        let cfg = crate::config::ModelConfig {
            max_seq_len: 4,
            vocab_size: 5,
            padded_vocab_size: 8,
            num_layers: 1,
            num_heads: 1,
            channels: 2,
        };
        let layout = ParamLayout::new(&cfg);
        let adamw = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, decay_all: false };
        let n = layout.total;
        let (mut p, mut m, mut v) = (vec![1.0f32; n], vec![0.0; n], vec![0.0; n]);
        // GPT-2's recipe: the 2-D weights decay, biases and layernorm weights do not
        let decayed = ["wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"];
        // every value of every tensor against the hand-computed one, naming what differs
        let check = |when: &str, p: &[f32], m: &[f32], v: &[f32], want: (f32, f32, f32, f32)| {
            let (want_decayed, want_plain, want_m, want_v) = want;
            for (i, name) in crate::model::PARAM_NAMES.iter().enumerate() {
                let (want_p, how) =
                    if decayed.contains(name) { (want_decayed, "decayed") } else { (want_plain, "not decayed") };
                for j in layout.range(i) {
                    for (what, got, want) in [("param", p[j], want_p), ("m", m[j], want_m), ("v", v[j], want_v)] {
                        assert!(
                            approx::relative_eq!(got, want, max_relative = 1e-6),
                            "AdamW {when}: {what} of {name} ({how}) is {got}, by hand {want}"
                        );
                    }
                }
            }
        };
        adamw_update(&mut p, &vec![0.5; n], &mut m, &mut v, &layout, &adamw, 0.1, 1, 1.0);
        check("t = 1", &p, &m, &v, (0.89, 0.9, 0.05, 0.0125));
        adamw_update(&mut p, &vec![-0.25; n], &mut m, &mut v, &layout, &adamw, 0.1, 2, 1.0);
        check("t = 2", &p, &m, &v, (0.854_263_1, 0.873_163_1, 0.02, 0.015));

        // grad_scale multiplies the gradient first: g = 1 at scale 0.5 is the t = 1 step above
        let (mut p, mut m, mut v) = (vec![1.0f32; n], vec![0.0; n], vec![0.0; n]);
        adamw_update(&mut p, &vec![1.0; n], &mut m, &mut v, &layout, &adamw, 0.1, 1, 0.5);
        check("t = 1, g = 1 at grad_scale 0.5", &p, &m, &v, (0.89, 0.9, 0.05, 0.0125));
        // decay_all (llm.c's CPU trainer): every tensor decays
        let all = AdamWConfig { decay_all: true, ..adamw };
        let (mut p, mut m, mut v) = (vec![1.0f32; n], vec![0.0; n], vec![0.0; n]);
        adamw_update(&mut p, &vec![0.5; n], &mut m, &mut v, &layout, &all, 0.1, 1, 1.0);
        check("t = 1, decay_all", &p, &m, &v, (0.89, 0.89, 0.05, 0.0125));
    }
}
