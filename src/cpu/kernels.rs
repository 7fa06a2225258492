//! The two implementations of the CPU layers, and the type of each layer function: what `layers.rs`
//! (the table of functions by precision) and `gpt2.rs` (the model calling them) share, below both.
//! `CpuKernels` picks the readable reference of this folder or the fast versions of `fast/`.

use super::attention::{attention_backward, attention_forward};
use super::gelu::{gelu_backward, gelu_forward};
use super::{fast, matmul, softmax_crossentropy};

/// Which implementation of the layers the model calls: the readable reference in this folder, or
/// the fast versions in `src/cpu/fast/`, which are tested against the reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuKernels {
    Reference,
    #[default]
    Fast,
}

pub type MatmulForward = fn(&mut [f32], &[f32], &[f32], Option<&[f32]>, usize, usize, usize);
pub type MatmulBackward = fn(&mut [f32], &mut [f32], Option<&mut [f32]>, &[f32], &[f32], &[f32], usize, usize, usize);
pub type ClassifierForward = fn(&mut [f32], &mut [f32], &[f32], &[u32], usize, usize, usize);
pub type ClassifierBackward = fn(&mut [f32], &[f32], &[f32], &[u32], usize, usize, usize);
pub type GeluForward = fn(&mut [f32], &[f32]);
pub type GeluBackward = fn(&mut [f32], &[f32], &[f32]);
pub type AttentionForward = fn(&mut [f32], &mut [f32], &[f32], usize, usize, usize, usize);
pub type AttentionBackward = fn(&mut [f32], &mut [f32], &[f32], &[f32], &[f32], &[f32], usize, usize, usize, usize);

impl crate::choice::Choice for CpuKernels {
    const WHAT: &'static str = "CPU layers";
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (CpuKernels::Reference, "reference", "the readable layers of src/cpu/*.rs (a debugger steps into them)"),
        (CpuKernels::Fast, "fast", "the fast layers of src/cpu/fast/, tested against the reference"),
    ];
}

impl CpuKernels {
    /// The matmul forward and backward of this implementation.
    pub fn matmul(self) -> (MatmulForward, MatmulBackward) {
        match self {
            CpuKernels::Reference => (matmul::matmul_forward, matmul::matmul_backward),
            CpuKernels::Fast => (fast::matmul::matmul_forward, fast::matmul::matmul_backward),
        }
    }

    /// The GELU forward and backward of this implementation.
    pub fn gelu(self) -> (GeluForward, GeluBackward) {
        match self {
            CpuKernels::Reference => (gelu_forward, gelu_backward),
            CpuKernels::Fast => (fast::gelu::gelu_forward, fast::gelu::gelu_backward),
        }
    }

    /// The loss (softmax + cross-entropy) forward and its fused backward of this implementation.
    pub fn classifier(self) -> (ClassifierForward, ClassifierBackward) {
        match self {
            CpuKernels::Reference => {
                (softmax_crossentropy::crossentropy_forward, softmax_crossentropy::crossentropy_softmax_backward)
            }
            CpuKernels::Fast => (
                fast::softmax_crossentropy::crossentropy_forward,
                fast::softmax_crossentropy::crossentropy_softmax_backward,
            ),
        }
    }

    /// The attention forward and backward of this implementation.
    pub fn attention(self) -> (AttentionForward, AttentionBackward) {
        match self {
            CpuKernels::Reference => (attention_forward, attention_backward),
            CpuKernels::Fast => (fast::attention::attention_forward, fast::attention::attention_backward),
        }
    }
}

pub type EncoderForward = fn(&mut [f32], &[u32], &[f32], &[f32], usize, usize, usize);
pub type EncoderBackward = fn(&mut [f32], &mut [f32], &[f32], &[u32], usize, usize, usize);
pub type LayernormForward = fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[f32], &[f32], usize, usize);
pub type LayernormBackward =
    fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[f32], &[f32], &[f32], &[f32], usize, usize);
pub type ResidualForward = fn(&mut [f32], &[f32], &[f32]);
pub type ResidualBackward = fn(&mut [f32], &mut [f32], &[f32]);
