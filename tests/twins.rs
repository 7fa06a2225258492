//! The CPU model and its GPU twin read the same: between the `// [twin: forward]` (or
//! `backward`) and `// [end twin]` comments, `src/cpu/gpt2.rs` and `src/cuda/gpt2.rs` make the same
//! layer calls with the same arguments, in the same order, on views cut the same way. A learner can
//! diff the two files and see only what differs in kind: on the GPU each layer is a method of the
//! device (`gpu.layernorm_forward(...)`), returns a `Result` (`?`), and the launches that index by
//! device-side token ids are `unsafe`; on the CPU, views are reborrowed (`&mut *a.encoded`).
//!
//! The normalisation, applied to both regions before comparing them statement by statement:
//! comments, whitespace and trailing commas are dropped; on the GPU side `gpu.`, `?` and `unsafe { ... }` around a
//! call are dropped; on the CPU side `&mut *` is dropped. Anything else that differs fails this test,
//! naming the first statement where the two part.

use std::path::Path;

fn region(path: &str, name: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: cannot read: {e}"));
    let begin = format!("// [twin: {name}]");
    let start = text.find(&begin).unwrap_or_else(|| panic!("{path}: no `{begin}` comment"));
    let end =
        text[start..].find("// [end twin]").unwrap_or_else(|| panic!("{path}: no `// [end twin]` after `{begin}`"));
    text[start + begin.len()..start + end].to_string()
}

/// Comments and whitespace out; the regions' statements, one string each.
fn statements(code: &str, rewrites: &[(&str, &str)]) -> Vec<String> {
    let mut flat: String = code
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    // rustfmt puts a trailing comma after the last argument of a call, or the last item of an
    // array, that it breaks over lines
    flat = flat.replace(",)", ")").replace(",]", "]");
    for (from, to) in rewrites {
        flat = flat.replace(from, to);
    }
    flat.split_inclusive([';', '{', '}']).map(str::to_string).collect()
}

fn check_twins(name: &str) -> usize {
    let cpu = statements(&region("src/cpu/gpt2.rs", name), &[("&mut*", "")]);
    // `unsafe{gpu.f(...)?};` -> `f(...);`
    let gpu = statements(
        &region("src/cuda/gpt2.rs", name).replace("unsafe {", "").replace("? };", "?;"),
        &[("gpu.", ""), ("?", "")],
    );
    for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        assert_eq!(
            c, g,
            "`{name}`: src/cpu/gpt2.rs and src/cuda/gpt2.rs part at statement {} of the twin region:\n  cpu: {c}\n  gpu: {g}\n\
             make the same change in both files (see the normalisation in tests/twins.rs)",
            i + 1
        );
    }
    assert_eq!(
        cpu.len(),
        gpu.len(),
        "`{name}`: the twin regions have {} (CPU) and {} (GPU) statements; the longer one goes on with: {:?}",
        cpu.len(),
        gpu.len(),
        if cpu.len() > gpu.len() { &cpu[gpu.len()..] } else { &gpu[cpu.len()..] }
    );
    cpu.len()
}

#[test]
fn cpu_and_gpu_forward_make_the_same_calls() {
    let n = check_twins("forward");
    println!("forward: {n} statements agree");
    assert!(n > 25, "the forward twin region looks too short ({n} statements)");
}

#[test]
fn cpu_and_gpu_backward_make_the_same_calls() {
    let n = check_twins("backward");
    println!("backward: {n} statements agree");
    assert!(n > 25, "the backward twin region looks too short ({n} statements)");
}
