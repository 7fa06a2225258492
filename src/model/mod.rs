//! Where every number of the model lives.
//!
//! All parameters sit in one flat `Vec<f32>` in llm.c's tensor order, so a checkpoint is that buffer
//! written out, and the gradients and AdamW moments are buffers of the same layout. `ParamLayout`
//! knows the shape and offset of each of the 16 tensors; `ParamViews` / `ParamViewsMut` cut a flat
//! buffer into named slices. The activations get the same treatment in `ActivationLayout`.
//! The CUDA path (`src/cuda/gpt2.rs`) uses the same layouts for its device buffers.

pub mod checkpoint;
pub mod hf;
pub mod init;

use crate::config::ModelConfig;

/// Loads a model from any file `--init` accepts: a Hugging Face directory (`config.json` +
/// `model.safetensors`) or `.safetensors` file (`hf.rs`), else an llm.c model file or one of our
/// checkpoints (`checkpoint.rs`, which tells those two apart by their magic number).
pub fn load_model(path: &std::path::Path) -> Result<checkpoint::Checkpoint, crate::files::FileError> {
    if path.is_dir() || path.extension().is_some_and(|e| e == "safetensors") {
        hf::load(path)
    } else {
        checkpoint::load(path)
    }
}

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

/// Defines a struct of named slices cut, in field order, from one flat buffer, given each field's size.
macro_rules! flat_views {
    ($(#[$doc:meta])* $name:ident, $slice:ty, $split:ident, [$($field:ident),+ $(,)?]) => {
        $(#[$doc])*
        pub struct $name<'a> {
            $(pub $field: $slice,)+
        }
        impl<'a> $name<'a> {
            /// Cuts `flat` into the fields, the i-th field taking `sizes[i]` elements.
            pub fn new(sizes: &[usize], flat: $slice) -> Self {
                assert!(flat.len() >= sizes.iter().sum::<usize>(), "flat buffer smaller than its layout");
                let mut rest = flat;
                let mut sizes = sizes.iter();
                $(
                    let (head, tail) = rest.$split(*sizes.next().expect("one size per field"));
                    let $field = head;
                    rest = tail;
                )+
                let _ = rest;
                $name { $($field,)+ }
            }
        }
    };
}

flat_views!(
    /// The 16 parameter tensors (or their gradients, or AdamW moments) as named slices.
    ParamViews, &'a [f32], split_at,
    [wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb]
);
flat_views!(
    /// Mutable version of `ParamViews`.
    ParamViewsMut, &'a mut [f32], split_at_mut,
    [wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb]
);

impl ParamLayout {
    /// The element count of each tensor, in order: what `ParamViews::new` takes.
    pub fn sizes(&self) -> [usize; 16] {
        std::array::from_fn(|i| self.numel(i))
    }
}

/// The activations the forward pass keeps for the backward pass (llm.c's, less the (T, T) attention
/// matrices and the probabilities, which are recomputed from one log-sum-exp per row). attproj and
/// fcproj are only added to the residual stream, never read by the backward: one block's worth each,
/// reused by every block.
pub const ACTIVATION_NAMES: [&str; 22] = [
    "encoded",
    "ln1",
    "ln1_mean",
    "ln1_rstd",
    "qkv",
    "atty",
    "att_lse",
    "attproj",
    "residual2",
    "ln2",
    "ln2_mean",
    "ln2_rstd",
    "fch",
    "fch_gelu",
    "fcproj",
    "residual3",
    "lnf",
    "lnf_mean",
    "lnf_rstd",
    "logits",
    "logits_lse",
    "losses",
];

/// Sizes of the activation tensors for a batch of B sequences of T tokens.
pub fn activation_sizes(cfg: &ModelConfig, b: usize, t: usize) -> [usize; 22] {
    checked_activation_sizes(cfg, b, t)
        .expect("activation sizes overflow: check the batch with checked_activation_sizes first")
}

/// `activation_sizes`, or `None` when a size or their sum does not fit a usize (a huge --batch).
pub fn checked_activation_sizes(cfg: &ModelConfig, b: usize, t: usize) -> Option<[usize; 22]> {
    let (l, nh, c, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.padded_vocab_size);
    // the number of elements of a tensor of this shape
    let n = |shape: &[usize]| shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let sizes = [
        n(&[b, t, c])?,       // encoded (B, T, C)
        n(&[l, b, t, c])?,    // ln1 (L, B, T, C)
        n(&[l, b, t])?,       // ln1_mean (L, B, T)
        n(&[l, b, t])?,       // ln1_rstd (L, B, T)
        n(&[l, b, t, 3, c])?, // qkv (L, B, T, 3C)
        n(&[l, b, t, c])?,    // atty (L, B, T, C)
        n(&[l, b, nh, t])?,   // att_lse (L, B, NH, T)
        n(&[b, t, c])?,       // attproj (B, T, C), one block's
        n(&[l, b, t, c])?,    // residual2 (L, B, T, C)
        n(&[l, b, t, c])?,    // ln2 (L, B, T, C)
        n(&[l, b, t])?,       // ln2_mean (L, B, T)
        n(&[l, b, t])?,       // ln2_rstd (L, B, T)
        n(&[l, b, t, 4, c])?, // fch (L, B, T, 4C)
        n(&[l, b, t, 4, c])?, // fch_gelu (L, B, T, 4C)
        n(&[b, t, c])?,       // fcproj (B, T, C), one block's
        n(&[l, b, t, c])?,    // residual3 (L, B, T, C)
        n(&[b, t, c])?,       // lnf (B, T, C)
        n(&[b, t])?,          // lnf_mean (B, T)
        n(&[b, t])?,          // lnf_rstd (B, T)
        n(&[b, t, vp])?,      // logits (B, T, Vp)
        n(&[b, t])?,          // logits_lse (B, T)
        n(&[b, t])?,          // losses (B, T)
    ];
    // the flat buffer holds them all: their sum must fit too
    sizes.iter().try_fold(0usize, |acc, &s| acc.checked_add(s))?;
    Some(sizes)
}

flat_views!(
    /// The activations (or their gradients) as named slices.
    ActivationViews, &'a mut [f32], split_at_mut,
    [encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, att_lse, attproj, residual2, ln2, ln2_mean, ln2_rstd,
     fch, fch_gelu, fcproj, residual3, lnf, lnf_mean, lnf_rstd, logits, logits_lse, losses]
);

/// The activation gradients: the head's, then one block's, which every block reuses in turn (the
/// backward goes through the blocks one at a time and needs only the gradients of the one it is in).
/// `residual` is the gradient of the residual stream where the backward stands (of the last
/// residual3 at the start, of the embedding at the end); `losses` holds dlosses; `att_delta` is
/// attention's scratch (rowsum(dout * out), see `src/cpu/attention.rs`).
pub const GRADIENT_NAMES: [&str; 13] = [
    "residual",
    "lnf",
    "losses",
    "ln1",
    "qkv",
    "atty",
    "att_delta",
    "attproj",
    "residual2",
    "ln2",
    "fch",
    "fch_gelu",
    "fcproj",
];

/// Sizes of the activation gradients (`GRADIENT_NAMES`) for a batch of B sequences of T tokens.
pub fn gradient_sizes(cfg: &ModelConfig, b: usize, t: usize) -> [usize; 13] {
    checked_gradient_sizes(cfg, b, t)
        .expect("gradient sizes overflow: check the batch with checked_gradient_sizes first")
}

/// `gradient_sizes`, or `None` when a size or their sum does not fit a usize.
pub fn checked_gradient_sizes(cfg: &ModelConfig, b: usize, t: usize) -> Option<[usize; 13]> {
    let (nh, c) = (cfg.num_heads, cfg.channels);
    let n = |shape: &[usize]| shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let sizes = [
        n(&[b, t, c])?,    // residual (B, T, C)
        n(&[b, t, c])?,    // lnf (B, T, C)
        n(&[b, t])?,       // losses (B, T)
        n(&[b, t, c])?,    // ln1 (B, T, C)
        n(&[b, t, 3, c])?, // qkv (B, T, 3C)
        n(&[b, t, c])?,    // atty (B, T, C)
        n(&[b, nh, t])?,   // att_delta (B, NH, T)
        n(&[b, t, c])?,    // attproj (B, T, C)
        n(&[b, t, c])?,    // residual2 (B, T, C)
        n(&[b, t, c])?,    // ln2 (B, T, C)
        n(&[b, t, 4, c])?, // fch (B, T, 4C)
        n(&[b, t, 4, c])?, // fch_gelu (B, T, 4C)
        n(&[b, t, c])?,    // fcproj (B, T, C)
    ];
    sizes.iter().try_fold(0usize, |acc, &s| acc.checked_add(s))?;
    Some(sizes)
}

flat_views!(
    /// The activation gradients as named slices.
    GradientViews, &'a mut [f32], split_at_mut,
    [residual, lnf, losses, ln1, qkv, atty, att_delta, attproj, residual2, ln2, fch, fch_gelu, fcproj]
);

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
        let v = ParamViews::new(&layout.sizes(), &flat);
        assert_eq!(v.qkvw.len(), 12 * 3 * 768 * 768);
        assert_eq!(v.lnfb.len(), 768);
    }
}
