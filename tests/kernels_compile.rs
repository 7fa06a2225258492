//! Every kernel of `kernels/` compiles with NVRTC, with no GPU and no driver: only libnvrtc is needed.
//! Each kernel file becomes a cubin (machine code) for sm_80 and for sm_90, as `Gpu::new` loads it.
//! CI gets libnvrtc from NVIDIA's pinned PyPI wheel (`.ci/install-nvrtc.sh`, into a Python venv), and
//! `src/cuda/libs.rs` finds it there with no LD_LIBRARY_PATH:
//!
//!   PATH=$(dirname $(.ci/install-nvrtc.sh --python)):$PATH GPT_REQUIRE_NVRTC=1 cargo test --release --test kernels_compile
//!
//! Without libnvrtc the tests that need it are reported as ignored, with the reason (this file's
//! harness, `fn main` at the end: tests/common/harness.rs), unless GPT_REQUIRE_NVRTC=1 makes that a failure.

#[path = "common/harness.rs"]
mod harness;
use gpt2::cuda::kernels::{compile, SOURCES};

/// The architectures the kernels must compile for: Ampere (A100) and Hopper (H100, H200).
const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

fn nvrtc_or_skip() -> bool {
    let Err(e) = gpt2::cuda::libs::load(gpt2::cuda::libs::CudaLib::Nvrtc) else { return true };
    let why = format!("{e} (.ci/install-nvrtc.sh installs it)");
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

/// Whether `bytes` holds `name` as a whole NUL-terminated string (as an ELF string table holds
/// symbol names).
fn has_symbol(bytes: &[u8], name: &str) -> bool {
    let needle = [&[0u8][..], name.as_bytes(), &[0u8][..]].concat();
    bytes.windows(needle.len()).any(|w| w == needle.as_slice())
}

fn every_kernel_compiles_with_nvrtc_to_a_cubin_for_sm_80_and_sm_90() {
    if !nvrtc_or_skip() {
        return;
    }
    let mut failures = Vec::new();
    let mut cubins = Vec::new();
    for arch in ARCHS {
        for source in &SOURCES {
            let started = std::time::Instant::now();
            match compile(source, arch) {
                Ok(cubin) => {
                    // machine code for the card, as an ELF file: what the driver loads without compiling
                    assert!(cubin.starts_with(b"\x7fELF"), "{} for {arch}: not an ELF cubin", source.file);
                    for kernel in source.kernels {
                        assert!(
                            has_symbol(&cubin, kernel),
                            "{} compiled for {arch} but its cubin has no symbol {kernel}",
                            source.file
                        );
                    }
                    println!(
                        "{arch} {:<26} {} kernels, {:>7} bytes of cubin, {:.2} s",
                        source.file,
                        source.kernels.len(),
                        cubin.len(),
                        started.elapsed().as_secs_f64()
                    );
                    cubins.push((arch, source.file, cubin));
                }
                Err(e) => {
                    println!("{e:#}");
                    failures.push(format!("{} for {arch}", source.file));
                }
            }
        }
    }
    assert!(failures.is_empty(), "NVRTC failed on: {}", failures.join(", "));
    // each architecture gets its own machine code
    for (arch, file, cubin) in cubins.iter().filter(|c| c.0 == ARCHS[0]) {
        let other = cubins.iter().find(|c| c.0 != *arch && c.1 == *file).expect("both architectures compiled");
        assert_ne!(cubin, &other.2, "{file}: the same cubin for {arch} and {}", other.0);
    }
}

fn a_virtual_architecture_is_refused_with_a_message_not_loaded_as_ptx() {
    if !nvrtc_or_skip() {
        return;
    }
    // compute_90 makes PTX only: compile must say so rather than hand the driver PTX to JIT
    let err = compile(&SOURCES[0], "compute_90").expect_err("no cubin for a virtual architecture");
    let message = format!("{err:#}");
    println!("{message}");
    assert!(message.contains("no cubin") && message.contains("compute_90"), "{message}");
}

/// Where libnvrtc was found: printed so that CI's log shows that the search (`src/cuda/libs.rs`)
/// found the wheel without LD_LIBRARY_PATH. With GPT_REQUIRE_NVRTC=1 and LD_LIBRARY_PATH not naming
/// it, CI checks that it was found by the search, not by the dynamic linker by name.
fn libnvrtc_is_found_where_it_is_installed_without_ld_library_path() {
    if !nvrtc_or_skip() {
        return;
    }
    let found = gpt2::cuda::libs::load(gpt2::cuda::libs::CudaLib::Nvrtc).expect("nvrtc_or_skip found it");
    println!("libnvrtc: {found:?}");
    let ld = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    if std::env::var("GPT_EXPECT_NVRTC_SEARCH").is_ok_and(|v| v == "1") {
        assert!(!ld.contains("nvidia"), "GPT_EXPECT_NVRTC_SEARCH=1 wants LD_LIBRARY_PATH without the wheel: {ld}");
        assert!(matches!(found, gpt2::cuda::libs::Found::At(_)), "found by name, not by the search: {found:?}");
    }
}

/// The tests of this file. Without libnvrtc those that need it are reported as ignored, with the
/// reason, and counted as ignored (not as passed); GPT_REQUIRE_NVRTC=1 makes that a failure.
fn main() {
    use harness::Needs::{It as Nvrtc, Nothing};
    let present = gpt2::cuda::libs::load(gpt2::cuda::libs::CudaLib::Nvrtc)
        .map(|_| ())
        .map_err(|e| format!("no libnvrtc: {} (.ci/install-nvrtc.sh installs it)", e.short()));
    let requirement = harness::Requirement { what: "libnvrtc", present, require_var: "GPT_REQUIRE_NVRTC" };
    harness::run(
        include_str!("kernels_compile.rs"),
        requirement,
        harness::tests![
            Nothing => [every_kernel_file_and_kernel_is_listed_in_sources];
            Nvrtc => [
                every_kernel_compiles_with_nvrtc_to_a_cubin_for_sm_80_and_sm_90,
                a_virtual_architecture_is_refused_with_a_message_not_loaded_as_ptx,
                libnvrtc_is_found_where_it_is_installed_without_ld_library_path,
            ];
        ],
    )
}
