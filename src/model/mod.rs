//! Where every number of the model lives.
//!
//! All parameters sit in one flat `Vec<f32>` in llm.c's tensor order, so a checkpoint is that buffer
//! written out, and the gradients and AdamW moments are buffers of the same layout. `ParamLayout`
//! knows the shape and offset of each of the 16 tensors; `ParamViews` / `ParamViewsMut` cut a flat
//! buffer into named slices. The activations get the same treatment in `ActivationLayout`.
//! The CUDA path (`src/cuda/gpt2.rs`) uses the same layouts for its device buffers.

pub mod checkpoint;
pub mod init;

use crate::config::ModelConfig;

/// The 16 parameter tensors, in the order llm.c writes them.
pub const PARAM_NAMES: [&str; 16] = [
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb", "fcprojw",
    "fcprojb", "lnfw", "lnfb",
];

/// Shapes and offsets of the parameter tensors inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    pub shapes: [Vec<usize>; 16],
    pub offsets: [usize; 16],
    pub total: usize,
}

impl ParamLayout {
    pub fn new(cfg: &ModelConfig) -> Self {
        let (vp, maxt, l, c) = (cfg.padded_vocab_size, cfg.max_seq_len, cfg.num_layers, cfg.channels);
        let shapes: [Vec<usize>; 16] = [
            vec![vp, c],       // wte: token embedding, also the LM head
            vec![maxt, c],     // wpe: position embedding
            vec![l, c],        // ln1w
            vec![l, c],        // ln1b
            vec![l, 3 * c, c], // qkvw: (out, in) like torch's Linear
            vec![l, 3 * c],    // qkvb
            vec![l, c, c],     // attprojw
            vec![l, c],        // attprojb
            vec![l, c],        // ln2w
            vec![l, c],        // ln2b
            vec![l, 4 * c, c], // fcw
            vec![l, 4 * c],    // fcb
            vec![l, c, 4 * c], // fcprojw
            vec![l, c],        // fcprojb
            vec![c],           // lnfw
            vec![c],           // lnfb
        ];
        let mut offsets = [0; 16];
        let mut total = 0;
        for (i, s) in shapes.iter().enumerate() {
            offsets[i] = total;
            total += s.iter().product::<usize>();
        }
        ParamLayout { shapes, offsets, total }
    }

    /// Number of elements of tensor `i`.
    pub fn numel(&self, i: usize) -> usize {
        self.shapes[i].iter().product()
    }

    /// The range of tensor `i` in the flat buffer.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i] + self.numel(i)
    }

    /// Whether AdamW's weight decay applies to tensor `i` by default: the 2-D weight matrices
    /// (embeddings and linear weights), not biases and LayerNorm parameters, as nanoGPT splits them.
    pub fn decays(&self, i: usize) -> bool {
        matches!(PARAM_NAMES[i], "wte" | "wpe" | "qkvw" | "attprojw" | "fcw" | "fcprojw")
    }
}

macro_rules! named_views {
    ($name:ident, $slice:ty, $split:ident, $($field:ident),+) => {
        /// One slice per parameter tensor, cut from a flat buffer in llm.c's order.
        pub struct $name<'a> {
            $(pub $field: $slice,)+
        }
        impl<'a> $name<'a> {
            pub fn new(layout: &ParamLayout, flat: $slice) -> Self {
                assert_eq!(flat.len(), layout.total, "flat buffer does not match the layout");
                let mut rest = flat;
                let mut i = 0;
                $(
                    let (head, tail) = rest.$split(layout.numel(i));
                    let $field = head;
                    rest = tail;
                    i += 1;
                )+
                let _ = (rest, i);
                $name { $($field,)+ }
            }
        }
    };
}

named_views!(
    ParamViews,
    &'a [f32],
    split_at,
    wte,
    wpe,
    ln1w,
    ln1b,
    qkvw,
    qkvb,
    attprojw,
    attprojb,
    ln2w,
    ln2b,
    fcw,
    fcb,
    fcprojw,
    fcprojb,
    lnfw,
    lnfb
);
named_views!(
    ParamViewsMut,
    &'a mut [f32],
    split_at_mut,
    wte,
    wpe,
    ln1w,
    ln1b,
    qkvw,
    qkvb,
    attprojw,
    attprojb,
    ln2w,
    ln2b,
    fcw,
    fcb,
    fcprojw,
    fcprojb,
    lnfw,
    lnfb
);

/// Layer `l`'s slice of a tensor stacked over layers.
pub fn layer<T>(t: &[T], l: usize, num_layers: usize) -> &[T] {
    let n = t.len() / num_layers;
    &t[l * n..(l + 1) * n]
}

/// Layer `l`'s mutable slice of a tensor stacked over layers.
pub fn layer_mut<T>(t: &mut [T], l: usize, num_layers: usize) -> &mut [T] {
    let n = t.len() / num_layers;
    &mut t[l * n..(l + 1) * n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_parameter_count_and_llmc_order() {
        let cfg = ModelConfig::from_name("d12").unwrap();
        let layout = ParamLayout::new(&cfg);
        assert_eq!(layout.total, cfg.num_parameters());
        assert_eq!(layout.offsets[1], 50304 * 768);
        let flat = vec![0.0f32; layout.total];
        let v = ParamViews::new(&layout, &flat);
        assert_eq!(v.qkvw.len(), 12 * 3 * 768 * 768);
        assert_eq!(v.lnfb.len(), 768);
    }
}
