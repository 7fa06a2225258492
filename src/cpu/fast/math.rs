//! Elementwise math that LLVM can vectorize: `exp` and `tanh` made only of +, ×, /, min/max and bit
//! operations (the libm functions are calls, one element at a time). Used by `gelu.rs` and
//! `softmax_crossentropy.rs`; `#[inline(always)]` so they vectorize inside the callers' loops.
//!
//! exp is Cephes' `expf`: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for exp(r), and
//! 2^n put straight into the exponent bits. tanh(u) = sign(u) (1 − e) / (1 + e) with e = exp(−2|u|),
//! which never overflows.

/// tanh(u) = sign(u) (1 − e) / (1 + e) with e = exp(−2|u|). Absolute error a few 1e-8 (from `exp`'s
/// ~1 ulp); NaN in, NaN out.
#[inline(always)]
pub fn tanh(u: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * u.abs());
    ((1.0 - e) / (1.0 + e)).copysign(u)
}

/// exp(x) for x <= 0, about 1 ulp (Cephes `expf`); x below −87 gives exp(−87) ≈ 1.6e-38 instead of a
/// denormal or 0, which is below anything tanh can see.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·LN2_HI is exact for |n| < 2^9
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits
    const ROUND: f32 = 12_582_912.0;
    let x = if x.is_nan() { x } else { x.max(-87.0) };
    // x = n ln2 + r with |r| <= ln2 / 2
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    // exp(r) by Cephes' minimax polynomial
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let exp_r = p * r * r + r + 1.0;
    // times 2^n, built from its exponent bits (n >= −126 here, so it is a normal number)
    exp_r * f32::from_bits((n_int.wrapping_add(127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<f32> {
        let mut x: Vec<f32> = (0..40_001).map(|i| (i as f32 - 20_000.0) / 2_000.0).collect(); // [-10, 10]
        x.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 50.0, -50.0, 100.0, -100.0, 1e30, -1e30]);
        x
    }

    #[test]
    fn fast_tanh_matches_std() {
        // exp is ~1 ulp, so tanh's absolute error is a few ulps of 1 at most
        for &u in &inputs() {
            let (fast, std) = (tanh(u), u.tanh());
            assert!((fast - std).abs() <= 4.0 * f32::EPSILON, "tanh({u}): fast {fast} vs std {std}");
        }
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn fast_exp_matches_std_for_nonpositive_inputs() {
        // about 1 ulp (Cephes' figure); 4 ulps of slack. Below -87 it clamps (documented).
        for i in 0..=87_000 {
            let x = -(i as f32) / 1000.0;
            let (fast, std) = (exp_nonpositive(x), x.exp());
            assert!((fast - std).abs() <= 4.0 * f32::EPSILON * std, "exp({x}): fast {fast} vs std {std}");
        }
        assert!(exp_nonpositive(-1000.0) < 1e-37 && exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
    }
}
