//! Which function does each layer: one table, chosen by (kernels, precision), that `gpt2.rs` binds
//! to the layer names before its forward and backward passes. The model code between the twin
//! markers calls `layernorm_forward(...)` whatever the choice, so it reads the same in fp32 and bf16,
//! with the readable layers or the fast ones, and stays the twin of `src/cuda/gpt2.rs`.
//!
//! | precision | kernels   | layers                                                                  |
//! |-----------|-----------|-------------------------------------------------------------------------|
//! | fp32      | reference | `src/cpu/*.rs`                                                          |
//! | fp32      | fast      | `src/cpu/fast/` for matmul, attention, GELU, softmax; the rest readable |
//! | bf16      | reference | `src/cpu/bf16.rs`: each readable layer, then its outputs rounded        |
//! | bf16      | fast      | the fast layers, then rounded; the matmul is `fast/matmul/bf16.rs`      |

use super::kernels::{
    AttentionBackward, AttentionForward, ClassifierBackward, ClassifierForward, CpuKernels, EncoderBackward,
    EncoderForward, GeluBackward, GeluForward, LayernormBackward, LayernormForward, MatmulBackward, MatmulForward,
    ResidualBackward, ResidualForward,
};
use super::{bf16, encoder, fast, layernorm, residual};
use crate::precision::Precision;

/// Every layer function the model calls, by the name it calls it.
#[derive(Clone, Copy)]
pub struct Layers {
    pub encoder_forward: EncoderForward,
    pub encoder_backward: EncoderBackward,
    pub layernorm_forward: LayernormForward,
    pub layernorm_backward: LayernormBackward,
    pub matmul_forward: MatmulForward,
    pub matmul_backward: MatmulBackward,
    pub attention_forward: AttentionForward,
    pub attention_backward: AttentionBackward,
    pub residual_forward: ResidualForward,
    pub residual_backward: ResidualBackward,
    pub gelu_forward: GeluForward,
    pub gelu_backward: GeluBackward,
    pub crossentropy_forward: ClassifierForward,
    pub crossentropy_softmax_backward: ClassifierBackward,
}

impl Layers {
    /// The layers for these kernels at this precision (see the table at the top of the file).
    pub fn new(kernels: CpuKernels, precision: Precision) -> Layers {
        let (matmul_forward, matmul_backward) = kernels.matmul();
        let (gelu_forward, gelu_backward) = kernels.gelu();
        let (attention_forward, attention_backward) = kernels.attention();
        let (crossentropy_forward, crossentropy_softmax_backward) = kernels.classifier();
        let fp32 = Layers {
            encoder_forward: encoder::encoder_forward,
            encoder_backward: encoder::encoder_backward,
            layernorm_forward: layernorm::layernorm_forward,
            layernorm_backward: layernorm::layernorm_backward,
            matmul_forward,
            matmul_backward,
            attention_forward,
            attention_backward,
            residual_forward: residual::residual_forward,
            residual_backward: residual::residual_backward,
            gelu_forward,
            gelu_backward,
            crossentropy_forward,
            crossentropy_softmax_backward,
        };
        match precision {
            Precision::Fp32 => fp32,
            Precision::Bf16 => {
                // what every bf16 combination shares: the layers that only round what they write;
                // the embedding's backward and the classifier's forward write fp32 and stay as they are
                let shared = Layers {
                    encoder_forward: bf16::encoder_forward,
                    layernorm_forward: bf16::layernorm_forward,
                    layernorm_backward: bf16::layernorm_backward,
                    residual_forward: bf16::residual_forward,
                    residual_backward: bf16::residual_backward,
                    ..fp32
                };
                match kernels {
                    CpuKernels::Reference => Layers {
                        matmul_forward: bf16::matmul_forward,
                        matmul_backward: bf16::matmul_backward,
                        attention_forward: bf16::attention_forward,
                        attention_backward: bf16::attention_backward,
                        gelu_forward: bf16::gelu_forward,
                        gelu_backward: bf16::gelu_backward,
                        crossentropy_softmax_backward: bf16::crossentropy_softmax_backward,
                        ..shared
                    },
                    CpuKernels::Fast => Layers {
                        matmul_forward: fast::matmul::bf16::matmul_forward,
                        matmul_backward: fast::matmul::bf16::matmul_backward,
                        attention_forward: bf16::fast_attention_forward,
                        attention_backward: bf16::fast_attention_backward,
                        gelu_forward: bf16::fast_gelu_forward,
                        gelu_backward: bf16::fast_gelu_backward,
                        crossentropy_softmax_backward: bf16::fast_crossentropy_softmax_backward,
                        ..shared
                    },
                }
            }
        }
    }
}
