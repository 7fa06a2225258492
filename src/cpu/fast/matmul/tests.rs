//! The fast matmul against the readable one of `src/cpu/matmul.rs`, for every micro-kernel this
//! CPU runs (`Isa::available()`), at GPT-2 shapes and at ragged ones.

use super::*;
use crate::cpu::matmul as readable;

/// A deterministic pseudo-random fill in [-1, 1) (a tiny LCG: no dependency, same on every run).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Compare `got` with `want` element by element. Both sum the same products in a different order,
/// and fp32 rounding of a sum of n terms is bounded by about n · eps · Σ|term|; with Σ|term| for
/// an output bounded by `scale` (the dot product length times max|x|·max|w| = k here, as the inputs
/// are in [-1, 1], plus what was already in the buffer) the tolerance is k · 2 eps · scale: loose
/// enough for any summation order, tight enough that one wrong or missing product (size ~1e-1 or
/// more on average) fails.
fn assert_close(name: &str, got: &[f32], want: &[f32], k: usize, scale: f32) {
    assert_eq!(got.len(), want.len());
    let tol = (k as f32) * 2.0 * f32::EPSILON * scale;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{name}[{i}]: fast {g} vs readable {w} (tolerance {tol})");
    }
}

fn check_forward(isa: Isa, bt: usize, c: usize, oc: usize, with_bias: bool) {
    let inp = fill(bt * c, 1);
    let weight = fill(oc * c, 2);
    let bias = fill(oc, 3);
    let bias = with_bias.then_some(&bias[..]);
    let mut want = fill(bt * oc, 4); // garbage that forward must overwrite
    let mut got = fill(bt * oc, 5);
    readable::matmul_forward(&mut want, &inp, &weight, bias, bt, c, oc);
    matmul_forward_with(isa, &mut got, &inp, &weight, bias, bt, c, oc);
    assert_close(&format!("{isa:?} out ({bt},{c},{oc}) bias={with_bias}"), &got, &want, c + 1, c as f32 + 1.0);
}

fn check_backward(isa: Isa, bt: usize, c: usize, oc: usize, with_bias: bool) {
    let dout = fill(bt * oc, 6);
    let inp = fill(bt * c, 7);
    let weight = fill(oc * c, 8);
    // nonzero starting gradients: backward must add to them
    let (mut dinp_want, mut dw_want, mut db_want) = (fill(bt * c, 9), fill(oc * c, 10), fill(oc, 11));
    let (mut dinp_got, mut dw_got, mut db_got) = (dinp_want.clone(), dw_want.clone(), db_want.clone());
    let (db_want_arg, db_got_arg) =
        if with_bias { (Some(&mut db_want[..]), Some(&mut db_got[..])) } else { (None, None) };
    readable::matmul_backward(&mut dinp_want, &mut dw_want, db_want_arg, &dout, &inp, &weight, bt, c, oc);
    matmul_backward_with(isa, &mut dinp_got, &mut dw_got, db_got_arg, &dout, &inp, &weight, bt, c, oc);
    let tag = format!("{isa:?} ({bt},{c},{oc}) bias={with_bias}");
    assert_close(&format!("dinp {tag}"), &dinp_got, &dinp_want, oc + 1, oc as f32 + 1.0);
    assert_close(&format!("dweight {tag}"), &dw_got, &dw_want, bt + 1, bt as f32 + 1.0);
    assert_close(&format!("dbias {tag}"), &db_got, &db_want, bt + 1, bt as f32 + 1.0);
}

/// Sizes that are multiples of no block size (37, 53, 71), a single row, sizes that cross the MC,
/// NC and KC blocks (300 > KC, 257 > MC), and multiples of every tile size (GPT-2-like).
const SIZES: [(usize, usize, usize); 6] =
    [(37, 53, 71), (1, 53, 71), (1, 1, 1), (130, 300, 257), (260, 520, 400), (64, 96, 96)];

#[test]
fn fast_matmul_forward_matches_readable_on_every_kernel() {
    for isa in Isa::available() {
        for &(bt, c, oc) in &SIZES {
            check_forward(isa, bt, c, oc, true);
            check_forward(isa, bt, c, oc, false);
        }
    }
}

#[test]
fn fast_matmul_backward_matches_readable_on_every_kernel() {
    for isa in Isa::available() {
        for &(bt, c, oc) in &SIZES {
            check_backward(isa, bt, c, oc, true);
            check_backward(isa, bt, c, oc, false);
        }
    }
}

#[test]
fn portable_kernel_is_always_available_and_best_is_available() {
    assert!(Isa::Portable.is_available());
    assert!(Isa::best().is_available());
    assert!(Isa::available().contains(&Isa::best()));
}

#[test]
fn fast_matmul_is_the_same_on_one_and_two_threads() {
    // the tiling depends on the thread count; the result per tile must not
    let (bt, c, oc) = (37, 300, 257);
    let (inp, weight) = (fill(bt * c, 1), fill(oc * c, 2));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut out = vec![0.0; bt * oc];
        pool.install(|| matmul_forward(&mut out, &inp, &weight, None, bt, c, oc));
        out
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn gemm_with_empty_shared_dimension_writes_the_bias() {
    let bias = [1.0, 2.0, 3.0];
    let mut c = vec![5.0; 6];
    let empty = Strided { data: &[], rs: 0, cs: 0 };
    gemm(Isa::best(), 2, 3, 0, empty, empty, &mut c, 3, Some(&bias), false);
    assert_eq!(c, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
}
