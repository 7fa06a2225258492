//! Every kernel of `kernels/` compiles with NVRTC, with no GPU and no driver: only libnvrtc is needed.
//! CI gets it from NVIDIA's pinned PyPI wheel (`.ci/install-nvrtc.sh`):
//!
//!   LD_LIBRARY_PATH=$(.ci/install-nvrtc.sh) GPT_REQUIRE_NVRTC=1 cargo test --test kernels_compile -- --nocapture
//!
//! Without libnvrtc the NVRTC test prints why it skips and passes, unless GPT_REQUIRE_NVRTC=1.

use gpt2::cuda::kernels::{compile, SOURCES};

/// The architectures the kernels must compile for: Ampere (A100) and Hopper (H100, H200).
const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

fn nvrtc_or_skip() -> bool {
    if gpt2::cuda::nvrtc_available() {
        return true;
    }
    let why = "libnvrtc.so was not found (install it with .ci/install-nvrtc.sh and put the folder it prints \
               on LD_LIBRARY_PATH)";
    if std::env::var("GPT_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
        panic!("GPT_REQUIRE_NVRTC=1 but {why}");
    }
    println!("skipping: {why}");
    false
}

/// The names of the `extern "C" __global__` kernels defined in a source file.
fn kernels_defined_in(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("extern \"C\" __global__") {
        // kernels return void: the name sits between `void` and the argument list
        rest = &rest[at + rest[at..].find(" void ").expect("a kernel returns void") + 6..];
        if let Some(bounds) = rest.strip_prefix("__launch_bounds__(") {
            rest = &bounds[bounds.find(')').expect("closed __launch_bounds__") + 1..];
        }
        let open = rest.find('(').expect("a kernel has an argument list");
        names.push(rest[..open].trim().to_string());
        rest = &rest[open..];
    }
    names
}

#[test]
fn every_kernel_file_and_kernel_is_listed_in_sources() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("kernels/ exists")
        .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cu"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = SOURCES.iter().map(|s| s.file.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "every kernels/*.cu must be in SOURCES (src/cuda/kernels/mod.rs)");
    for source in &SOURCES {
        let defined = kernels_defined_in(source.source);
        assert_eq!(defined, source.kernels, "kernels defined in {} vs listed in SOURCES", source.file);
    }
}

#[test]
fn every_kernel_compiles_with_nvrtc_for_sm_80_and_sm_90() {
    if !nvrtc_or_skip() {
        return;
    }
    let mut failures = Vec::new();
    for arch in ARCHS {
        for source in &SOURCES {
            let started = std::time::Instant::now();
            match compile(source, arch) {
                Ok(ptx) => {
                    let text = ptx.to_src();
                    for kernel in source.kernels {
                        assert!(
                            text.contains(&format!(".entry {kernel}(")),
                            "{} compiled for {arch} but its PTX has no entry {kernel}",
                            source.file
                        );
                    }
                    println!(
                        "{arch} {:<26} {} kernels, {:>6} bytes of PTX, {:.2} s",
                        source.file,
                        source.kernels.len(),
                        text.len(),
                        started.elapsed().as_secs_f64()
                    );
                }
                Err(e) => {
                    println!("{e:#}");
                    failures.push(format!("{} for {arch}", source.file));
                }
            }
        }
    }
    assert!(failures.is_empty(), "NVRTC failed on: {}", failures.join(", "));
}
