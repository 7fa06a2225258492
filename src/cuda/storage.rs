//! How the GPU stores a number: as an `f32`, or as a bf16 number in 16 bits (`Bf16`), the two
//! storage types every kernel of `kernels/` is written for (`kernels/bf16.cuh`). `Storage` is what the
//! launch wrappers of `kernels/` and the model in `gpt2.rs` are generic over: a `Dev<Bf16>` view
//! launches the `_bf16` kernels, a `Dev<f32>` view the fp32 ones, so `gpt2.rs` composes the layers
//! once for both precisions. What is bf16 and what stays fp32 is `src/precision.rs`'s definition.
//!
//! On the host a `Bf16` goes to and from `f32` with `src/precision.rs`'s `to_bf16_bits` (round to
//! nearest even) and `from_bf16_bits` (exact): the same rounding the kernels do on the device.
//!
//! ```
//! use gpt2::cuda::{Bf16, Storage};
//! assert_eq!(Bf16::from_f32(1.0), Bf16(0x3F80));
//! assert_eq!(Bf16::from_f32(std::f32::consts::PI).to_f32(), 3.140625);
//! assert_eq!(<f32 as Storage>::kernel("gelu_forward"), "gelu_forward");
//! assert_eq!(Bf16::kernel("gelu_forward"), "gelu_forward_bf16");
//! ```

use crate::precision::{from_bf16_bits, to_bf16_bits, Precision};
use cudarc::driver::{DeviceRepr, ValidAsZeroBits};

/// A bf16 number as its 16 bits: `struct bf16 { unsigned short bits; }` of `kernels/bf16.cuh`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bf16(pub u16);

// SAFETY: a plain 16-bit value with no padding, laid out as the kernels' struct bf16, and all-zero
// bits are the number +0.0.
unsafe impl DeviceRepr for Bf16 {}
unsafe impl ValidAsZeroBits for Bf16 {}

/// A storage type of the kernels: `f32` or `Bf16`.
pub trait Storage: DeviceRepr + ValidAsZeroBits + Default + Copy + std::fmt::Debug + Send + Sync + 'static {
    /// The precision that stores activations this way.
    const PRECISION: Precision;
    /// What the kernels for this storage have after their name: "" or "_bf16".
    const SUFFIX: &'static str;
    /// `x` in this format (rounded to nearest even for bf16).
    fn from_f32(x: f32) -> Self;
    /// This number as an f32 (exact).
    fn to_f32(self) -> f32;
    /// The name of kernel `base` for this storage type: `gelu_forward` or `gelu_forward_bf16`.
    fn kernel(base: &str) -> String {
        format!("{base}{}", Self::SUFFIX)
    }
}

impl Storage for f32 {
    const PRECISION: Precision = Precision::Fp32;
    const SUFFIX: &'static str = "";
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Storage for Bf16 {
    const PRECISION: Precision = Precision::Bf16;
    const SUFFIX: &'static str = "_bf16";
    fn from_f32(x: f32) -> Self {
        Bf16(to_bf16_bits(x))
    }
    fn to_f32(self) -> f32 {
        from_bf16_bits(self.0)
    }
}

/// `xs` in storage type `T` (each rounded to nearest even for bf16).
pub fn to_storage<T: Storage>(xs: &[f32]) -> Vec<T> {
    xs.iter().map(|&x| T::from_f32(x)).collect()
}

/// `xs` as f32s (exact).
pub fn to_f32s<T: Storage>(xs: &[T]) -> Vec<f32> {
    xs.iter().map(|&x| x.to_f32()).collect()
}
