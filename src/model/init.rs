//! GPT-2's weight initialization (as in nanoGPT and llm.c): weights N(0, 0.02), the two residual
//! output projections (attprojw, fcprojw) scaled down by 1/sqrt(2L) so the residual stream's
//! variance does not grow with depth, LayerNorm weights 1, biases 0.

use super::{ParamLayout, PARAM_NAMES};
use crate::config::ModelConfig;
use crate::rng::Rng;

/// A freshly initialized flat parameter buffer, the same for the same seed.
pub fn gpt2_init(cfg: &ModelConfig, seed: u64) -> Vec<f32> {
    let layout = ParamLayout::new(cfg);
    let mut params = vec![0.0f32; layout.total];
    let mut rng = Rng::new(seed);
    let residual_scale = 1.0 / (2.0 * cfg.num_layers as f32).sqrt();
    for (i, name) in PARAM_NAMES.iter().enumerate() {
        let tensor = &mut params[layout.range(i)];
        match *name {
            "ln1w" | "ln2w" | "lnfw" => tensor.fill(1.0),
            "wte" | "wpe" | "qkvw" | "fcw" => tensor.iter_mut().for_each(|p| *p = 0.02 * rng.normal()),
            "attprojw" | "fcprojw" => tensor.iter_mut().for_each(|p| *p = 0.02 * residual_scale * rng.normal()),
            _ => {} // biases stay 0
        }
    }
    params
}
