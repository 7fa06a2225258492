//! Mixed precision: what "bf16 training" means in this project, once, for the CPU and the GPU.
//!
//! `--precision bf16` (on `train` and `bench`) trains with the numerics written below. The CPU
//! (`src/cpu/bf16.rs` for the readable layers, `src/cpu/fast/matmul/bf16.rs` for the fast matmul) and
//! the GPU follow this definition exactly, so a CPU bf16 run and a GPU bf16 run differ only in the
//! order fp32 sums are added up inside a layer. That is what lets the GPU's bf16 kernels be tested
//! against the CPU's bf16 at tight tolerances, not only against fp32 at loose ones. Other files
//! point here; none restates it.
//!
//! # The definition
//!
//! **Kept in fp32** (these are sums of many small numbers, or numbers whose small changes matter):
//! - the master weights (what AdamW updates and what checkpoints store, so the file format does not
//!   change with the precision);
//! - the parameter gradients, accumulated in fp32 (across positions, micro-batches and layers);
//! - AdamW's moments m and v;
//! - layernorm's per-row mean and rstd;
//! - attention's softmax statistics (the scores and probabilities inside the layer, or a flash
//!   kernel's per-row log-sum-exp);
//! - the softmax over the vocabulary, the per-position losses, the loss, the gradient norm.
//!
//! **Stored in bf16** (round-to-nearest-even from fp32, `round_bf16` below):
//! - a bf16 copy of the weights, refreshed from the fp32 master after every update: this is what
//!   every layer reads;
//! - every activation the forward pass stores: the encoder output, the layernorm outputs, qkv, the
//!   attention output, the matmul outputs, the residual stream, fc before and after GELU, the logits;
//! - every activation gradient (dlogits, dln, dqkv, ... the gradients flowing back through them).
//!
//! **Inside a layer**: read bf16 inputs, compute and accumulate in fp32, and round each output value
//! once to bf16 when it is written. A backward pass that adds (`+=`) into an activation gradient
//! reads the bf16 value there, adds its fp32 contribution, and rounds the sum once when it writes it
//! back; into a parameter gradient it adds in fp32. The softmax / cross-entropy reads the bf16
//! logits and computes in fp32; the dlogits it writes are bf16.
//!
//! Why this split: bf16 has fp32's 8 exponent bits, so anything fp32 can hold, bf16 can (no loss
//! scaling is needed, unlike fp16), but only 8 bits of significand, about 2-3 decimal digits. That is
//! enough for a value a matmul reads (its error averages out over thousands of products summed in
//! fp32) and not enough for an accumulator: adding an update of 1e-4 to a weight of 0.02 in bf16
//! changes nothing at all (0.02's neighbours in bf16 are 0.0001 apart), which is why the master
//! weights, their gradients and AdamW's state stay fp32.
//!
//! On the CPU the bf16 values are held in `f32` slots whose low 16 bits are zero (an fp32 number
//! that is exactly a bf16 number); the fast matmul packs them as 16-bit words (`to_bf16_bits`).
//!
//! # Example
//!
//! ```
//! use gpt2::precision::{round_bf16, to_bf16_bits};
//! // 1 + 2^-8 is not a bf16 number: it lies exactly halfway between 1 and 1 + 2^-7 and goes to the
//! // even one, 1. A bit more than halfway goes up.
//! assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
//! assert_eq!(round_bf16(1.0 + 1.0 / 256.0 + 1.0 / 65536.0), 1.0 + 1.0 / 128.0);
//! // pi keeps three significant digits
//! assert_eq!(round_bf16(std::f32::consts::PI), 3.140625);
//! assert_eq!(to_bf16_bits(1.0), 0x3F80);
//! ```

use std::fmt;

/// The numerics of a training run: all fp32, or bf16 mixed precision as defined above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Everything in fp32.
    #[default]
    Fp32,
    /// bf16 weights copy, activations and activation gradients; fp32 everywhere else (see the module doc).
    Bf16,
}

impl crate::choice::Choice for Precision {
    const WHAT: &'static str = "precision";
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (Precision::Fp32, "fp32", "everything in fp32"),
        (Precision::Bf16, "bf16", "bf16 weight copy, activations and their gradients; fp32 master weights, gradients, AdamW state and statistics"),
    ];
}

impl Precision {
    /// Bytes of one number in this format where the definition lets it be bf16: a stored
    /// activation, an activation gradient, the weight copy the layers read (fp32 master weights,
    /// gradients, AdamW's moments and the statistics are 4 bytes in both). `src/memory.rs` counts by it.
    pub fn bytes(self) -> usize {
        match self {
            Precision::Fp32 => 4,
            Precision::Bf16 => 2,
        }
    }
    /// The name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// The precision a run takes when `--precision` is not given, and why, for a CUDA device of compute
/// capability `compute_capability` (major, minor), or the CPU (`None`). bf16 on cards that have bf16
/// tensor cores (compute capability 8.0 and newer: Ampere, Ada, Hopper, Blackwell), where it halves
/// the activations' memory and runs the GEMMs on those cores; fp32 on older cards and on the CPU
/// (its default before bf16 existed, and what the CPU layers are fastest in).
///
/// ```
/// use gpt2::precision::{default_precision, Precision};
/// assert_eq!(default_precision(Some((9, 0))).0, Precision::Bf16);
/// assert_eq!(default_precision(Some((7, 5))).0, Precision::Fp32);
/// assert_eq!(default_precision(None).0, Precision::Fp32);
/// ```
pub fn default_precision(compute_capability: Option<(i32, i32)>) -> (Precision, String) {
    match compute_capability {
        Some((major, minor)) if major >= 8 => (
            Precision::Bf16,
            format!("the default at compute capability {major}.{minor} >= 8.0, which has bf16 tensor cores"),
        ),
        Some((major, minor)) => (
            Precision::Fp32,
            format!("the default at compute capability {major}.{minor} < 8.0, which has no bf16 tensor cores"),
        ),
        None => (Precision::Fp32, "the default on the CPU".to_string()),
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// fp32 -> bf16 bits, rounding to the nearest bf16 number, ties to even.
///
/// An fp32 number is 32 bits: 1 sign, 8 exponent, 23 significand (mantissa). bf16 ("brain float")
/// is simply its top 16 bits: the same sign and the same 8 exponent bits, so the same range
/// (about 1e-38 to 3e38), and the top 7 mantissa bits. The 16 bits dropped are mantissa: what is
/// lost is precision, 8 significant bits in fp32 terms (24 -> 8 counting the implicit leading 1),
/// so about 2.4 decimal digits are left instead of 7.2.
///
/// ```text
///   fp32:  s eeeeeeee mmmmmmm mmmmmmmmmmmmmmmm
///          |----- kept: bf16 -----| |-- dropped --|
/// ```
///
/// Cutting the bits off (truncation) would always round towards zero, a bias that accumulates.
/// Round-to-nearest adds half of the dropped range before cutting: 0x8000 in the low 16 bits. On an
/// exact tie (the dropped bits are exactly 0x8000) IEEE rounds to the even neighbour, the one whose
/// last kept bit is 0, so that ties go up half of the time and down the other half. Both in one
/// addition: add 0x7FFF plus the last kept bit (`lsb`). Above the halfway point the carry always
/// reaches the kept bits; exactly at it, it does only when lsb is 1 (odd goes up to even); below it,
/// never. A carry out of the mantissa moves into the exponent, which is right (1.11..1 rounds up to
/// 10.0), and a carry from the largest finite exponent gives the exponent of infinity with a zero
/// mantissa: overflow to inf, as IEEE rounding wants.
///
/// NaN must stay NaN: a NaN whose payload sits only in the dropped bits would otherwise become inf
/// (or the addition could carry a NaN into the sign bit), so NaNs are handled first, as a quiet NaN
/// with the same sign.
pub fn to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // keep the sign and the top of the payload; set the quiet bit so it stays a NaN
        return ((bits >> 16) as u16) | 0x0040;
    }
    // the last bit kept (bit 16), 0 or 1: the tie-breaker
    let lsb = (bits >> 16) & 1;
    // round half to even, then keep the top 16 bits (cannot overflow u32: bits < 0xFF80_0000 for
    // finite and infinite numbers with the sign, and 0xFF80_0000 + 0x8000 < 2^32)
    ((bits + 0x7FFF + lsb) >> 16) as u16
}

/// bf16 bits -> fp32: exact (every bf16 number is an fp32 number). The 16 bits go back on top and
/// the dropped mantissa bits come back as zeros.
pub fn from_bf16_bits(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// The nearest bf16 number to `x` (ties to even), as an fp32 value: `from_bf16_bits(to_bf16_bits(x))`.
/// This is the one rounding step of bf16 training ("round each output once when it is written").
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    from_bf16_bits(to_bf16_bits(x))
}

/// Rounds every value of `xs` to bf16 in place (an output buffer, after a layer wrote it in fp32).
pub fn round_slice_bf16(xs: &mut [f32]) {
    use rayon::prelude::*;
    // big buffers (logits) in parallel; chunks keep the task overhead small for short ones
    xs.par_chunks_mut(1 << 14).for_each(|chunk| {
        for x in chunk {
            *x = round_bf16(*x);
        }
    });
}

/// Whether every value of `xs` is a bf16 number (its low 16 bits are zero). Tests and debug
/// checks use it to see that a buffer follows the definition.
pub fn is_bf16(xs: &[f32]) -> bool {
    xs.iter().all(|x| x.to_bits() & 0xFFFF == 0)
}

#[cfg(test)]
mod tests {

    #[test]
    fn default_precision_is_bf16_from_compute_capability_8_and_fp32_before_and_on_the_cpu() {
        for (cc, want) in [
            (Some((6, 1)), Precision::Fp32),
            (Some((7, 0)), Precision::Fp32),
            (Some((7, 5)), Precision::Fp32),
            (Some((8, 0)), Precision::Bf16),
            (Some((8, 6)), Precision::Bf16),
            (Some((8, 9)), Precision::Bf16),
            (Some((9, 0)), Precision::Bf16),
            (Some((10, 0)), Precision::Bf16),
            (None, Precision::Fp32),
        ] {
            let (got, why) = default_precision(cc);
            println!("{cc:?}: {got} ({why})");
            assert_eq!(got, want, "{cc:?}: {why}");
        }
    }

    use super::*;

    #[test]
    fn exact_values_are_kept_and_pi_loses_its_low_bits() {
        for x in [0.0f32, -0.0, 1.0, -2.0, 0.5, 3.140625, 65280.0, f32::MIN_POSITIVE] {
            assert_eq!(round_bf16(x).to_bits(), x.to_bits(), "{x} is a bf16 number");
        }
        assert_eq!(to_bf16_bits(1.0), 0x3F80);
        assert_eq!(to_bf16_bits(-2.0), 0xC000);
        // pi = 0x40490FDB: the dropped half 0x0FDB is below 0x8000, so it rounds down
        assert_eq!(to_bf16_bits(std::f32::consts::PI), 0x4049);
        // 0.1 = 0x3DCCCCCD: dropped 0xCCCD > 0x8000, rounds up to 0x3DCD
        assert_eq!(to_bf16_bits(0.1), 0x3DCD);
        assert_eq!(from_bf16_bits(0x3DCD), f32::from_bits(0x3DCD_0000)); // 0.10009765625
    }

    #[test]
    fn ties_go_to_the_even_neighbour() {
        // 0x3F80_8000 is halfway between 0x3F80 (even) and 0x3F81: down to the even one
        assert_eq!(to_bf16_bits(f32::from_bits(0x3F80_8000)), 0x3F80);
        // 0x3F81_8000 is halfway between 0x3F81 (odd) and 0x3F82 (even): up
        assert_eq!(to_bf16_bits(f32::from_bits(0x3F81_8000)), 0x3F82);
        // just above / below the halfway point
        assert_eq!(to_bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(to_bf16_bits(f32::from_bits(0x3F81_7FFF)), 0x3F81);
        // a carry through the whole mantissa moves the exponent: 1.99999... -> 2
        assert_eq!(round_bf16(f32::from_bits(0x3FFF_FFFF)), 2.0);
    }

    #[test]
    fn nan_stays_nan_and_overflow_goes_to_infinity() {
        assert!(round_bf16(f32::NAN).is_nan());
        // a NaN whose payload is only in the dropped bits: truncation alone would make it inf
        let low_nan = f32::from_bits(0x7F80_0001);
        assert!(low_nan.is_nan() && round_bf16(low_nan).is_nan());
        assert!(round_bf16(f32::from_bits(0xFF80_0001)).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(f32::NEG_INFINITY), f32::NEG_INFINITY);
        // f32::MAX is above the largest bf16 (0x7F7F) by more than half a step: inf
        assert_eq!(round_bf16(f32::MAX), f32::INFINITY);
        assert_eq!(round_bf16(-f32::MAX), f32::NEG_INFINITY);
        assert_eq!(to_bf16_bits(f32::from_bits(0x7F7F_7FFF)), 0x7F7F);
    }

    #[test]
    fn agrees_with_the_half_crate_on_many_bit_patterns() {
        // every 2^13-th bit pattern plus its neighbours, covering ties, subnormals, inf and NaN
        let mut checked = 0;
        for hi in (0u64..1 << 32).step_by(1 << 13) {
            for delta in [0u32, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF] {
                let bits = (hi as u32).wrapping_add(delta);
                let x = f32::from_bits(bits);
                let ours = to_bf16_bits(x);
                let theirs = half::bf16::from_f32(x);
                if x.is_nan() {
                    assert!(from_bf16_bits(ours).is_nan() && theirs.is_nan(), "{bits:#x}");
                } else {
                    assert_eq!(ours, theirs.to_bits(), "{bits:#x}");
                }
                checked += 1;
            }
        }
        assert!(checked > 3_000_000);
    }

    #[test]
    fn rounding_error_is_at_most_half_a_bf16_step() {
        // 8 significant bits kept: a step is 2^-7 of the binade's bottom, half a step 2^-8, so the
        // relative error is at most 2^-8 (0.4%) for normal numbers; ~2.4 decimal digits are left
        let mut x = 1e-30f32;
        while x < 1e30 {
            let r = round_bf16(x);
            assert!(((r - x) / x).abs() <= 1.0 / 256.0, "{x} -> {r}");
            assert!(is_bf16(&[r]));
            x *= 1.000_37;
        }
    }

    #[test]
    fn precision_names_are_the_flag_values() {
        use crate::choice::Choice;
        for p in [Precision::Fp32, Precision::Bf16] {
            assert_eq!(p.name(), p.to_string());
            assert_eq!(Precision::parse(&p.to_string()), Ok(p));
        }
    }
}
