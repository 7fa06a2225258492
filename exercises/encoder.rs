//! Exercise 2: the embedding's backward. Reference: `src/cpu/encoder.rs`.
//! Judge: `cargo test --features exercise-encoder --test gradcheck encoder -- --nocapture`

/// The forward pass was `out[b, t, :] = wte[inp[b, t], :] + wpe[t, :]`, with tokens inp (B, T),
/// wte (Vp, C), wpe (maxT, C), out (B, T, C).
///
/// Write: for every (b, t), dwte[inp[b, t], :] += dout[b, t, :] and dwpe[t, :] += dout[b, t, :].
///
/// Hints:
/// - Row (b, t) of dout is `dout[(b * t_len + t) * c ..][..c]`; `dout.chunks_exact(c).enumerate()`
///   walks them with the flat index bt, and the position is `bt % t`.
/// - The same token can appear many times in a batch: its row of dwte collects all of them (`+=`).
pub fn encoder_backward(dwte: &mut [f32], dwpe: &mut [f32], dout: &[f32], inp: &[u32], b: usize, t: usize, c: usize) {
    todo!("exercise encoder_backward: write it in exercises/encoder.rs (see EXERCISES.md)")
}
