//! Where every number of the model lives.
//!
//! All parameters sit in one flat `Vec<f32>` in llm.c's tensor order, so a checkpoint is that buffer
//! written out, and the gradients and AdamW moments are buffers of the same layout. `ParamLayout`
//! knows the shape and offset of each of the 16 tensors; `ParamViews` / `ParamViewsMut` cut a flat
//! buffer into named slices. The activations and their gradients get the same treatment
//! (`ActivationViews`, `GradientViews`). Each of the three lists is written once, a line a tensor
//! (`tensor_list!` below); the CUDA path (`src/cuda/gpt2.rs`) and the memory plan (`src/memory.rs`)
//! are cut from the same lists.

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

// ---------------------------------------------------------------------------------------------
// The lists of tensors. Each tensor is one line: its name, `S` (stored in the precision's type) or
// `F` (fp32 whatever the precision: statistics and scratch), its shape and its role. From a list come
// a struct with one field per tensor (`Params`, `Activations`, `Gradients`), its names in order, which
// tensors are stored, the roles and the shapes: the CPU's views, the GPU's buffers (`src/cuda/gpt2.rs`)
// and the memory plan (`src/memory.rs`) are all cut from these three lists, so adding a tensor is
// adding a line.

/// The dimensions shapes are written in: L layers, NH heads, C channels, Vp the padded vocabulary,
/// maxT the longest sequence, and the batch's B sequences of T tokens (the parameters do not use
/// these two).
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub l: usize,
    pub nh: usize,
    pub c: usize,
    pub vp: usize,
    pub maxt: usize,
    pub b: usize,
    pub t: usize,
}

impl Dims {
    pub fn new(cfg: &ModelConfig, b: usize, t: usize) -> Dims {
        let (l, nh, c) = (cfg.num_layers, cfg.num_heads, cfg.channels);
        Dims { l, nh, c, vp: cfg.padded_vocab_size, maxt: cfg.max_seq_len, b, t }
    }
}

/// Cuts consecutive tensors off the front of one or two buffers: a stored tensor (`S`) and an fp32
/// one (`F`). On the CPU both come from the same flat `&[f32]`/`&mut [f32]` (which is its own
/// cutter); the GPU keeps its fp32 statistics in a buffer of their own.
pub trait Cut<S, F = S> {
    fn stored(&mut self, len: usize) -> S;
    fn fp32(&mut self, len: usize) -> F;
}

impl<'a> Cut<&'a [f32]> for &'a [f32] {
    fn stored(&mut self, len: usize) -> &'a [f32] {
        let (head, tail) = self.split_at(len);
        *self = tail;
        head
    }
    fn fp32(&mut self, len: usize) -> &'a [f32] {
        self.stored(len)
    }
}

impl<'a> Cut<&'a mut [f32]> for &'a mut [f32] {
    fn stored(&mut self, len: usize) -> &'a mut [f32] {
        let (head, tail) = std::mem::take(self).split_at_mut(len);
        *self = tail;
        head
    }
    fn fp32(&mut self, len: usize) -> &'a mut [f32] {
        self.stored(len)
    }
}

/// One field of a list, cut by its kind.
macro_rules! cut_one {
    ($cutter:ident, S, $len:expr) => {
        $cutter.stored($len)
    };
    ($cutter:ident, F, $len:expr) => {
        $cutter.fp32($len)
    };
}

/// Declares a list of tensors (see the top of this section).
macro_rules! tensor_list {
    (
        $(#[$doc:meta])*
        pub struct $list:ident<$($g:ident),+>;
        $(#[$names_doc:meta])* pub const $names:ident;
        pub const $stored:ident;
        pub const $roles:ident: [$role:ident];
        pub fn $shapes:ident(|$dims:pat_param|) {
            $($field:ident: $kind:ident [$($dim:expr),+] $r:ident,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $list<$($g),+> {
            $(pub $field: $kind,)+
        }

        $(#[$names_doc])*
        pub const $names: [&str; [$(stringify!($field)),+].len()] = [$(stringify!($field)),+];

        /// Whether each tensor is stored in the precision's type (else it is fp32).
        pub const $stored: [bool; $names.len()] = [$(stringify!($kind).as_bytes()[0] == b'S'),+];

        /// What each tensor is for.
        pub const $roles: [$role; $names.len()] = [$($role::$r),+];

        /// The shape of each tensor.
        pub fn $shapes(dims: &Dims) -> [Vec<usize>; $names.len()] {
            let $dims = *dims;
            [$(vec![$($dim),+]),+]
        }

        impl<$($g),+> $list<$($g),+> {
            /// The tensors cut in order from `cutter`, the i-th taking `sizes[i]` elements.
            pub fn cut(sizes: &[usize; $names.len()], cutter: &mut impl Cut<$($g),+>) -> Self {
                let mut sizes = sizes.iter().copied();
                // struct fields are evaluated in the order written: the list's order
                $list { $($field: cut_one!(cutter, $kind, sizes.next().unwrap_or(0)),)+ }
            }
        }
    };
}

/// What a parameter tensor is: AdamW decays the 2-D ones (`ParamLayout::decays`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    Embedding,
    Weight,
    Bias,
    Norm,
}

tensor_list! {
    /// The 16 parameter tensors (or their gradients, or AdamW's moments), one field each.
    pub struct Params<S>;
    /// The 16 parameter tensors, in the order llm.c writes them.
    pub const PARAM_NAMES;
    pub const PARAM_STORED;
    pub const PARAM_ROLES: [ParamRole];
    pub fn param_shapes(|Dims { l, c, vp, maxt, .. }|) {
        wte: S [vp, c] Embedding,         // token embedding, also the LM head
        wpe: S [maxt, c] Embedding,       // position embedding
        ln1w: S [l, c] Norm,
        ln1b: S [l, c] Norm,
        qkvw: S [l, 3 * c, c] Weight,     // (out, in) like torch's Linear
        qkvb: S [l, 3 * c] Bias,
        attprojw: S [l, c, c] Weight,
        attprojb: S [l, c] Bias,
        ln2w: S [l, c] Norm,
        ln2b: S [l, c] Norm,
        fcw: S [l, 4 * c, c] Weight,
        fcb: S [l, 4 * c] Bias,
        fcprojw: S [l, c, 4 * c] Weight,
        fcprojb: S [l, c] Bias,
        lnfw: S [c] Norm,
        lnfb: S [c] Norm,
    }
}

/// The parameters (or gradients, or AdamW moments) as named slices of one flat buffer.
pub type ParamViews<'a> = Params<&'a [f32]>;
/// Mutable version of `ParamViews`.
pub type ParamViewsMut<'a> = Params<&'a mut [f32]>;

/// Shapes and offsets of the parameter tensors inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    pub shapes: [Vec<usize>; 16],
    pub offsets: [usize; 16],
    pub total: usize,
}

impl ParamLayout {
    pub fn new(cfg: &ModelConfig) -> Self {
        let shapes = param_shapes(&Dims::new(cfg, 0, 0));
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
        matches!(PARAM_ROLES[i], ParamRole::Embedding | ParamRole::Weight)
    }

    /// The element count of each tensor, in order: what `ParamViews::new` takes.
    pub fn sizes(&self) -> [usize; 16] {
        std::array::from_fn(|i| self.numel(i))
    }
}

/// The element counts of tensors of these shapes, or `None` when one of them or their sum does not
/// fit a usize (a huge --batch).
fn checked_sizes<const N: usize>(shapes: &[Vec<usize>; N]) -> Option<[usize; N]> {
    let mut sizes = [0; N];
    for (size, shape) in sizes.iter_mut().zip(shapes) {
        *size = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    }
    // the flat buffer holds them all: their sum must fit too
    sizes.iter().try_fold(0usize, |acc, &s| acc.checked_add(s))?;
    Some(sizes)
}

/// Cuts `flat` into the list's tensors, after checking it holds them all.
macro_rules! views_new {
    ($list:ident<$($ty:ty),+>, $flat:ty, $n:expr) => {
        impl<'a> $list<$($ty),+> {
            /// Cuts `flat` into the tensors, the i-th taking `sizes[i]` elements.
            pub fn new(sizes: &[usize; $n], mut flat: $flat) -> Self {
                assert!(flat.len() >= sizes.iter().sum::<usize>(), "flat buffer smaller than its layout");
                Self::cut(sizes, &mut flat)
            }
        }
    };
}
views_new!(Params<&'a [f32]>, &'a [f32], 16);
views_new!(Params<&'a mut [f32]>, &'a mut [f32], 16);

/// What an activation is, and the row of `gpt2 memory`'s table it is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationRole {
    Residual,
    Layernorm,
    Attention,
    Mlp,
    /// One block's, reused by every block: only added to the residual stream, never read back.
    Projection,
    /// fp32 whatever the precision: layernorm's mean and rstd, log-sum-exps, losses.
    Statistic,
    /// The logits, over which the backward writes their gradient.
    Logits,
}

tensor_list! {
    /// The activations the forward pass keeps for the backward pass (llm.c's, less the (T, T)
    /// attention matrices and the probabilities, which are recomputed from one log-sum-exp per row).
    /// attproj and fcproj are only added to the residual stream, never read by the backward: one
    /// block's worth each, reused by every block.
    pub struct Activations<S, F>;
    /// The activations' names, in the flat buffer's order.
    pub const ACTIVATION_NAMES;
    pub const ACTIVATION_STORED;
    pub const ACTIVATION_ROLES: [ActivationRole];
    pub fn activation_shapes(|Dims { l, nh, c, vp, b, t, .. }|) {
        encoded: S [b, t, c] Residual,
        ln1: S [l, b, t, c] Layernorm,
        ln1_mean: F [l, b, t] Statistic,
        ln1_rstd: F [l, b, t] Statistic,
        qkv: S [l, b, t, 3, c] Attention,
        atty: S [l, b, t, c] Attention,
        att_lse: F [l, b, nh, t] Statistic,
        attproj: S [b, t, c] Projection,
        residual2: S [l, b, t, c] Residual,
        ln2: S [l, b, t, c] Layernorm,
        ln2_mean: F [l, b, t] Statistic,
        ln2_rstd: F [l, b, t] Statistic,
        fch: S [l, b, t, 4, c] Mlp,
        fch_gelu: S [l, b, t, 4, c] Mlp,
        fcproj: S [b, t, c] Projection,
        residual3: S [l, b, t, c] Residual,
        lnf: S [b, t, c] Layernorm,
        lnf_mean: F [b, t] Statistic,
        lnf_rstd: F [b, t] Statistic,
        logits: S [b, t, vp] Logits,
        logits_lse: F [b, t] Statistic,
        losses: F [b, t] Statistic,
    }
}

/// The activations (or their gradients) as named slices of one flat buffer.
pub type ActivationViews<'a> = Activations<&'a mut [f32], &'a mut [f32]>;
views_new!(Activations<&'a mut [f32], &'a mut [f32]>, &'a mut [f32], 22);

/// Sizes of the activation tensors for a batch of B sequences of T tokens.
pub fn activation_sizes(cfg: &ModelConfig, b: usize, t: usize) -> [usize; 22] {
    checked_activation_sizes(cfg, b, t)
        .expect("activation sizes overflow: check the batch with checked_activation_sizes first")
}

/// `activation_sizes`, or `None` when a size or their sum does not fit a usize (a huge --batch).
pub fn checked_activation_sizes(cfg: &ModelConfig, b: usize, t: usize) -> Option<[usize; 22]> {
    checked_sizes(&activation_shapes(&Dims::new(cfg, b, t)))
}

/// What an activation gradient is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradientRole {
    /// The head's (final layernorm, logits) and the residual stream's.
    Head,
    /// One block's, which every block reuses in turn.
    Block,
    /// fp32 scratch: the losses' gradients, attention's delta.
    Scratch,
}

tensor_list! {
    /// The activation gradients: the head's, then one block's, which every block reuses in turn (the
    /// backward goes through the blocks one at a time and needs only the gradients of the one it is
    /// in). `residual` is the gradient of the residual stream where the backward stands (of the last
    /// residual3 at the start, of the embedding at the end); `losses` holds dlosses; `att_delta` is
    /// attention's scratch (rowsum(dout * out), see `src/cpu/attention.rs`).
    pub struct Gradients<S, F>;
    /// The activation gradients' names, in the flat buffer's order.
    pub const GRADIENT_NAMES;
    pub const GRADIENT_STORED;
    pub const GRADIENT_ROLES: [GradientRole];
    pub fn gradient_shapes(|Dims { nh, c, b, t, .. }|) {
        residual: S [b, t, c] Head,
        lnf: S [b, t, c] Head,
        losses: F [b, t] Scratch,
        ln1: S [b, t, c] Block,
        qkv: S [b, t, 3, c] Block,
        atty: S [b, t, c] Block,
        att_delta: F [b, nh, t] Scratch,
        attproj: S [b, t, c] Block,
        residual2: S [b, t, c] Block,
        ln2: S [b, t, c] Block,
        fch: S [b, t, 4, c] Block,
        fch_gelu: S [b, t, 4, c] Block,
        fcproj: S [b, t, c] Block,
    }
}

/// The activation gradients as named slices of one flat buffer.
pub type GradientViews<'a> = Gradients<&'a mut [f32], &'a mut [f32]>;
views_new!(Gradients<&'a mut [f32], &'a mut [f32]>, &'a mut [f32], 13);

/// Sizes of the activation gradients (`GRADIENT_NAMES`) for a batch of B sequences of T tokens.
pub fn gradient_sizes(cfg: &ModelConfig, b: usize, t: usize) -> [usize; 13] {
    checked_gradient_sizes(cfg, b, t)
        .expect("gradient sizes overflow: check the batch with checked_gradient_sizes first")
}

/// `gradient_sizes`, or `None` when a size or their sum does not fit a usize.
pub fn checked_gradient_sizes(cfg: &ModelConfig, b: usize, t: usize) -> Option<[usize; 13]> {
    checked_sizes(&gradient_shapes(&Dims::new(cfg, b, t)))
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
        let v = ParamViews::new(&layout.sizes(), &flat);
        assert_eq!(v.qkvw.len(), 12 * 3 * 768 * 768);
        assert_eq!(v.lnfb.len(), 768);
    }

    #[test]
    fn lists_agree_with_their_kinds_and_llmc_names() {
        // a statistic or scratch tensor is exactly one that stays fp32 in bf16
        for (i, role) in ACTIVATION_ROLES.iter().enumerate() {
            assert_eq!(*role == ActivationRole::Statistic, !ACTIVATION_STORED[i], "{}", ACTIVATION_NAMES[i]);
        }
        for (i, role) in GRADIENT_ROLES.iter().enumerate() {
            assert_eq!(*role == GradientRole::Scratch, !GRADIENT_STORED[i], "{}", GRADIENT_NAMES[i]);
        }
        assert_eq!(PARAM_NAMES[4], "qkvw");
        assert_eq!(ACTIVATION_NAMES[21], "losses");
        assert_eq!(GRADIENT_NAMES[6], "att_delta");
        // the views cut fields in the list's order: each field starts where the previous one ended
        let cfg = ModelConfig::from_name("tiny").unwrap();
        let sizes = activation_sizes(&cfg, 2, 8);
        let mut flat: Vec<f32> = (0..sizes.iter().sum::<usize>()).map(|i| i as f32).collect();
        let a = ActivationViews::new(&sizes, &mut flat);
        let starts = [a.encoded[0], a.ln1[0], a.ln1_mean[0], a.losses[0]];
        let offset = |k: usize| sizes[..k].iter().sum::<usize>() as f32;
        assert_eq!(starts, [0.0, offset(1), offset(2), offset(21)]);
        let shapes = activation_shapes(&Dims::new(&cfg, 2, 8));
        assert_eq!(shapes[4], vec![cfg.num_layers, 2, 8, 3, cfg.channels]);
    }
}
