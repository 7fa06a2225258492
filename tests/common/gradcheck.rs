//! The gradient check as a reusable judge: given a layer's analytic gradient (from its backward
//! pass) and the numeric one (central finite differences of its forward pass), say whether they
//! agree, and when they do not, say how in a way that points at the bug.
//!
//! `tests/gradcheck.rs` calls it for every layer; a learner exercise can call it the same way:
//! write a backward pass, compute both gradients, and `check_gradient(...)?`.
//!
//! ```text
//! let numeric = numeric_gradient(x.len(), 1e-2, |i, d| loss(&nudge(&x, i, d)));
//! check_gradient("gelu", "inp", &dinp, &numeric, 1e-4)?;
//! ```

/// Central finite differences (f(x+h) - f(x-h)) / 2h of a scalar loss, one element at a time:
/// `loss_at(i, delta)` must return the loss with element i of the tensor moved by delta.
pub fn numeric_gradient(n: usize, h: f32, mut loss_at: impl FnMut(usize, f32) -> f64) -> Vec<f64> {
    (0..n).map(|i| (loss_at(i, h) - loss_at(i, -h)) / (2.0 * h as f64)).collect()
}

/// The relative error of the whole tensor, ||analytic - numeric|| / (||analytic|| + ||numeric||):
/// 0 when they agree, 1 when one is zero and the other not, about 2 when they have opposite signs.
pub fn relative_error(analytic: &[f64], numeric: &[f64]) -> f64 {
    let norm = |x: &mut dyn Iterator<Item = f64>| x.map(|v| v * v).sum::<f64>().sqrt();
    let diff = norm(&mut analytic.iter().zip(numeric).map(|(a, n)| a - n));
    let sum = norm(&mut analytic.iter().copied()) + norm(&mut numeric.iter().copied());
    if sum == 0.0 {
        0.0
    } else {
        diff / sum
    }
}

/// Checks one tensor's analytic gradient against its numeric one. Prints one row of the table that
/// `table_header` starts (see it with `--nocapture`), and on failure returns a report naming the
/// layer and the tensor, the relative error against `tolerance`, the first values side by side and
/// a hint at what is usually wrong.
pub fn check_gradient(
    layer: &str,
    tensor: &str,
    analytic: &[f32],
    numeric: &[f64],
    tolerance: f64,
) -> Result<(), String> {
    let analytic: Vec<f64> = analytic.iter().map(|&a| a as f64).collect();
    judge(layer, tensor, tensor, &analytic, numeric, tolerance, None)
}

/// The same check for a backward pass run into a gradient buffer that already held `prefill`:
/// a backward pass accumulates (`+=`), so `after - prefill` must be the gradient. When it is not
/// but `after` alone is, the report says the backward overwrote the buffer.
pub fn check_accumulates(
    layer: &str,
    tensor: &str,
    prefill: &[f32],
    after: &[f32],
    numeric: &[f64],
    tolerance: f64,
) -> Result<(), String> {
    assert_eq!(prefill.len(), after.len(), "prefill and result of {layer}/{tensor} differ in length");
    let added: Vec<f64> = after.iter().zip(prefill).map(|(&a, &p)| a as f64 - p as f64).collect();
    let after_f64: Vec<f64> = after.iter().map(|&a| a as f64).collect();
    let overwrote = relative_error(&after_f64, numeric) < tolerance;
    let untouched = after == prefill && numeric.iter().any(|&n| n != 0.0);
    let hint = if overwrote {
        Some(
            "the gradient is right but what the buffer held before is lost: does the backward add into \
             the gradient (+=) rather than overwrite it (=)? Gradients are zeroed once a step and every \
             backward adds to them (a tensor used twice, or gradient accumulation, needs the sum)."
                .to_string(),
        )
    } else if untouched {
        Some("the backward did not change this gradient buffer at all: is it written, and to this buffer?".into())
    } else {
        None
    };
    let layer = format!("{layer} (into a pre-filled gradient)");
    judge(&layer, tensor, &format!("{tensor} +="), &added, numeric, tolerance, hint)
}

/// A pre-fill for gradient buffers: known values (multiples of 1/8 in [-0.375, 0.375], exact in f32)
/// that a backward pass must add to.
pub fn prefill(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 7) as f32 * 0.125 - 0.375).collect()
}

/// The header of the table `check_gradient` prints rows of (`check_accumulates`'s rows say "+=").
pub fn table_header(what: &str) {
    println!("\n{what}");
    println!("{}", header_row());
}

fn header_row() -> String {
    format!(
        "{:>12} | {:>6} | {:>13} | {:>13} | {:>10} | {:>9} | {:>9}",
        "tensor", "n", "max|analytic|", "max|numeric|", "max diff", "rel error", "tolerance"
    )
}

/// The check itself; `label` names the tensor in the table row ("inp", or "inp +=" for the
/// accumulating run).
fn judge(
    layer: &str,
    tensor: &str,
    label: &str,
    analytic: &[f64],
    numeric: &[f64],
    tolerance: f64,
    hint: Option<String>,
) -> Result<(), String> {
    assert_eq!(analytic.len(), numeric.len(), "analytic and numeric gradients of {layer}/{tensor} differ in length");
    let max_abs = |x: &[f64]| x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let (worst_i, max_diff) =
        analytic.iter().zip(numeric).map(|(a, n)| (a - n).abs()).enumerate().fold((0, 0.0f64), |(wi, wd), (i, d)| {
            if d > wd {
                (i, d)
            } else {
                (wi, wd)
            }
        });
    let rel = relative_error(analytic, numeric);
    let row = format!(
        "{label:>12} | {:>6} | {:>13.6e} | {:>13.6e} | {max_diff:>10.3e} | {rel:>9.2e} | {tolerance:>9.1e}",
        analytic.len(),
        max_abs(analytic),
        max_abs(numeric),
    );
    println!("{row}");
    if rel < tolerance && rel.is_finite() {
        return Ok(());
    }
    let mut report = format!(
        "{layer}: the gradient of `{tensor}` is wrong: relative error {rel:.3e}, tolerance {tolerance:.1e}\n{}\n{row}\n",
        header_row()
    );
    report += &format!("{:>8} | {:>14} | {:>14} | {:>12}\n", "index", "analytic", "numeric", "difference");
    let shown = 6.min(analytic.len());
    for i in (0..shown).chain((worst_i >= shown).then_some(worst_i)) {
        let (a, n) = (analytic[i], numeric[i]);
        let note = if i == worst_i { "  <- largest difference" } else { "" };
        report += &format!("{i:>8} | {a:>14.6e} | {n:>14.6e} | {:>12.3e}{note}\n", a - n);
    }
    let hint = hint.unwrap_or_else(|| diagnose(layer, tensor, analytic, numeric, tolerance));
    report += &format!("hint: {hint}");
    Err(report)
}

/// A guess at the bug from the shape of the mismatch, else from the layer's math.
fn diagnose(layer: &str, tensor: &str, analytic: &[f64], numeric: &[f64], tolerance: f64) -> String {
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    if analytic.iter().all(|&a| a == 0.0) {
        return "the analytic gradient is all zeros: is this gradient computed and written to the right buffer?".into();
    }
    if analytic.iter().any(|a| !a.is_finite()) {
        return "the analytic gradient has NaN or infinity: a division by zero, or a log/sqrt of a bad value?".into();
    }
    // the best k with analytic ≈ k * numeric: if that fits, only a constant factor is wrong
    let nn = dot(numeric, numeric);
    if nn > 0.0 {
        let k = dot(analytic, numeric) / nn;
        let scaled: Vec<f64> = numeric.iter().map(|n| k * n).collect();
        if relative_error(analytic, &scaled) < tolerance && (k - 1.0).abs() > 0.01 {
            let what = if (k + 1.0).abs() < 0.01 { "the sign is flipped" } else { "a constant factor is off" };
            return format!(
                "analytic = {k:.4} x numeric everywhere: {what} (a missing 1/N or 1/sqrt(hs), a factor 2, a sign?)"
            );
        }
    }
    layer_hint(layer, tensor)
}

/// What usually goes wrong in each layer's backward pass.
fn layer_hint(layer: &str, tensor: &str) -> String {
    let l = layer.to_lowercase();
    let hint = if l.starts_with("gelu") {
        "check the derivative of the tanh term: d/dx tanh(u) = (1 - tanh^2 u) du/dx with \
         u = sqrt(2/pi) (x + 0.044715 x^3), so du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)"
    } else if l.starts_with("layernorm") {
        match tensor {
            "weight" => "dweight = sum over rows of dout * norm, with norm = (x - mean) * rstd (not the raw x)",
            "bias" => "dbias = sum over rows of dout",
            _ => {
                "dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) with dnorm = dout * weight: the \
                 two means are there because mean and rstd depend on every x of the row"
            }
        }
    } else if l.starts_with("matmul") {
        match tensor {
            "weight" => "dweight = dout^T @ inp: row o of dweight sums dout[., o] * inp[., .] over all rows",
            "bias" => "dbias = sum over rows of dout",
            _ => "dinp = dout @ weight: each input feeds every output o through weight row o",
        }
    } else if l.starts_with("attention") {
        "three steps back, only over t2 <= t1: through out = att @ v (datt = dout . v, dv += att * dout), \
         the softmax (dpreatt = att * (datt - sum(att * datt))), and the scores q.k / sqrt(hs)"
    } else if l.starts_with("softmax") || l.contains("crossentropy") {
        "dlogits = (probs - one_hot(target)) * dloss over the first V columns (the padding gets none)"
    } else if l.starts_with("encoder") {
        "each position's gradient goes to its token's row of dwte and its position's row of dwpe (+=)"
    } else if l.starts_with("residual") {
        "an addition passes dout unchanged to both inputs (+=)"
    } else {
        "run the per-layer checks (cargo test --release --test gradcheck): the layer that fails there is the bug; \
         if all pass, look at how gpt2.rs wires them (which buffer each backward reads and writes)"
    };
    hint.to_string()
}

/// Collects the reports of several checks, so one test can run them all and fail listing every one.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn add(&mut self, result: Result<(), String>) {
        if let Err(report) = result {
            self.0.push(report);
        }
    }

    /// Takes over the reports of another collection.
    pub fn merge(&mut self, other: Failures) {
        self.0.extend(other.0);
    }

    /// Panics with every report, if any (so the table prints without `--nocapture`).
    pub fn assert_none(self) {
        if !self.0.is_empty() {
            panic!("{} gradient check(s) failed:\n\n{}", self.0.len(), self.0.join("\n\n"));
        }
    }
}
