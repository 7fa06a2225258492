//! The kernels of `kernels/`: their sources, embedded in the binary, and their compilation at
//! start-up with NVRTC to a cubin for the device's architecture. The launch wrappers live one file per layer,
//! each named like the `.cu` file and the CPU file it mirrors, with the CPU twin's signature
//! (`gpu.layernorm_forward(out, mean, rstd, inp, weight, bias, bt, c)` in `layernorm.rs` does on the
//! device what `layernorm_forward(out, mean, rstd, inp, weight, bias, bt, c)` in
//! `src/cpu/layernorm.rs` does), beside the launch settings (block and tile sizes) as `pub const`s.
//!
//! Those consts are the one place a launch setting is written: `dev/cuda_emu/run.sh` extracts every
//! `pub const NAME: u32 = ...;` line of this folder into the emulator's `launch_settings.h`, so keep
//! them on one line each, with a value of digits and `*` only.
//!
//! The kernels are plain CUDA C++ and include no headers, so NVRTC needs nothing but libnvrtc;
//! `tests/kernels_compile.rs` compiles them all without a GPU. Each kernel is written once, as a
//! template over its storage type (fp32, or bf16 as `src/precision.rs` defines it), and named twice,
//! `gelu_forward` and `gelu_forward_bf16`; the one piece they share, `kernels/bf16.cuh` (the bf16
//! type, its exact widening and its round-to-nearest-even narrowing), is put in front of every file
//! here (`kernel_source!`), so that no file needs an `#include`.

use anyhow::{anyhow, Result};
use cudarc::driver::LaunchConfig;
use cudarc::nvrtc::result as nvrtc;
use std::ffi::CString;
use std::sync::Mutex;

/// One `.cu` file of `kernels/` and the `extern "C"` kernels it defines.
pub struct KernelSource {
    pub file: &'static str,
    pub source: &'static str,
    pub kernels: &'static [&'static str],
}

/// The text NVRTC compiles for `kernels/<file>`: `kernels/bf16.cuh`, then the file, with a `#line`
/// between them so that NVRTC's messages name the file and its own line numbers.
macro_rules! kernel_source {
    ($file:literal) => {
        concat!(
            include_str!("../../../kernels/bf16.cuh"),
            "#line 1 \"",
            $file,
            "\"\n",
            include_str!(concat!("../../../kernels/", $file))
        )
    };
}

/// Every kernel the CUDA path uses, file by file (in the order each file defines them).
pub const SOURCES: [KernelSource; 9] = [
    KernelSource {
        file: "encoder.cu",
        source: kernel_source!("encoder.cu"),
        kernels: &["encoder_forward", "encoder_backward", "encoder_forward_bf16", "encoder_backward_bf16"],
    },
    KernelSource {
        file: "layernorm.cu",
        source: kernel_source!("layernorm.cu"),
        kernels: &["layernorm_forward", "layernorm_backward", "layernorm_forward_bf16", "layernorm_backward_bf16"],
    },
    KernelSource {
        file: "matmul.cu",
        source: kernel_source!("matmul.cu"),
        kernels: &[
            "matmul_splitk_reduce",
            "matmul_add_bias",
            "matmul_forward1",
            "matmul_backward_dinp1",
            "matmul_backward_dweight1",
            "matmul_backward_dbias1",
            "matmul_forward2",
            "matmul_backward_dinp2",
            "matmul_backward_dweight2",
            "matmul_backward_dbias2",
            "matmul_forward3",
            "matmul_backward_dinp3",
            "matmul_backward_dweight3",
            "matmul_forward1_bf16",
            "matmul_backward_dinp1_bf16",
            "matmul_backward_dweight1_bf16",
            "matmul_backward_dbias1_bf16",
            "matmul_forward2_bf16",
            "matmul_backward_dinp2_bf16",
            "matmul_backward_dweight2_bf16",
            "matmul_backward_dbias2_bf16",
            "matmul_forward3_bf16",
            "matmul_backward_dinp3_bf16",
            "matmul_backward_dweight3_bf16",
        ],
    },
    KernelSource {
        file: "attention.cu",
        source: kernel_source!("attention.cu"),
        kernels: &[
            "attention_forward",
            "attention_backward_delta",
            "attention_backward_dkv",
            "attention_backward_dq",
            "attention_forward_bf16",
            "attention_backward_delta_bf16",
            "attention_backward_dkv_bf16",
            "attention_backward_dq_bf16",
        ],
    },
    KernelSource {
        file: "gelu.cu",
        source: kernel_source!("gelu.cu"),
        kernels: &["gelu_forward", "gelu_backward", "gelu_forward_bf16", "gelu_backward_bf16"],
    },
    KernelSource {
        file: "residual.cu",
        source: kernel_source!("residual.cu"),
        kernels: &["residual_forward", "residual_backward", "residual_forward_bf16", "residual_backward_bf16"],
    },
    KernelSource {
        file: "softmax_crossentropy.cu",
        source: kernel_source!("softmax_crossentropy.cu"),
        kernels: &[
            "crossentropy_forward",
            "crossentropy_softmax_backward",
            "crossentropy_forward_bf16",
            "crossentropy_softmax_backward_bf16",
        ],
    },
    KernelSource {
        file: "adamw.cu",
        source: kernel_source!("adamw.cu"),
        kernels: &["adamw_update", "refresh_bf16_weights"],
    },
    KernelSource {
        file: "global_norm.cu",
        source: kernel_source!("global_norm.cu"),
        kernels: &["global_norm_squared"],
    },
];

/// `compile`, remembered for the life of the process: a second `Gpu` (the tests make many) loads the
/// same cubin without compiling again.
pub fn compile_cached(source: &KernelSource, arch: &str) -> Result<Vec<u8>> {
    static CACHE: Mutex<Vec<(&'static str, String, Vec<u8>)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, _, cubin)) = cache.iter().find(|(file, a, _)| *file == source.file && a == arch) {
        return Ok(cubin.clone());
    }
    let cubin = compile(source, arch)?;
    cache.push((source.file, arch.to_string(), cubin.clone()));
    Ok(cubin)
}

/// Compiles one kernel file with NVRTC to a cubin, machine code for the real architecture `arch`
/// (e.g. "sm_90", from the card's compute capability), which the driver loads as it is. PTX would
/// leave the last compile to the driver, which refuses PTX newer than itself
/// (CUDA_ERROR_UNSUPPORTED_PTX_VERSION when libnvrtc is newer than the driver); a cubin has no such
/// step. Needs only libnvrtc (no driver, no GPU); a compile error carries NVRTC's log.
pub fn compile(source: &KernelSource, arch: &str) -> Result<Vec<u8>> {
    let file = source.file;
    let src = CString::new(source.source).map_err(|_| anyhow!("kernels/{file} contains a NUL byte"))?;
    let name = CString::new(file).map_err(|_| anyhow!("the file name {file:?} contains a NUL byte"))?;
    let prog = nvrtc::create_program(&src, Some(&name))
        .map_err(|e| anyhow!("NVRTC could not create a program for kernels/{file}: {e}"))?;
    let options = [format!("--gpu-architecture={arch}")];
    // SAFETY: `prog` was created above from `src` and `name`, which outlive it, and is destroyed
    // once, at the end of this block.
    unsafe {
        let compiled = match nvrtc::compile_program(prog, &options) {
            Ok(()) => cubin(prog).map_err(|e| anyhow!("NVRTC compiled kernels/{file} for {arch} but {e}")),
            Err(e) => Err(anyhow!(
                "NVRTC could not compile kernels/{file} for {arch} (options {options:?}): {e}\n{}",
                program_log(prog)
            )),
        };
        let _ = nvrtc::destroy_program(prog);
        compiled
    }
}

/// The cubin of a compiled program.
///
/// # Safety
/// `prog` must be a live, compiled NVRTC program.
unsafe fn cubin(prog: cudarc::nvrtc::sys::nvrtcProgram) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::sys;
    let mut size = 0usize;
    sys::nvrtcGetCUBINSize(prog, &mut size).result().map_err(|e| format!("has no cubin size: {e}"))?;
    if size == 0 {
        // what a virtual architecture (compute_90) gives: PTX only
        return Err("made no cubin (a real architecture such as sm_90 is needed)".into());
    }
    let mut bytes = vec![0u8; size];
    sys::nvrtcGetCUBIN(prog, bytes.as_mut_ptr().cast()).result().map_err(|e| format!("returned no cubin: {e}"))?;
    Ok(bytes)
}

/// NVRTC's log of a program, as text.
///
/// # Safety
/// `prog` must be a live NVRTC program.
unsafe fn program_log(prog: cudarc::nvrtc::sys::nvrtcProgram) -> String {
    match nvrtc::get_program_log(prog) {
        Ok(log) => {
            let bytes: Vec<u8> = log.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            String::from_utf8_lossy(&bytes).trim_end().to_string()
        }
        Err(e) => format!("(no log: {e})"),
    }
}

/// Launches kernel `$name` on the GPU's stream with the given config and arguments (local variables:
/// the builder keeps their addresses until the launch). Must be used inside `unsafe`, with a SAFETY
/// comment saying why the arguments are valid for that kernel. A wrapper generic over the storage
/// type `T` names its kernel `&T::kernel("gelu_forward")`: `gelu_forward` or `gelu_forward_bf16`.
macro_rules! launch {
    ($gpu:expr, $name:expr, $cfg:expr, $($arg:ident),+ $(,)?) => {{
        let name: &str = $name;
        $gpu.timed(name, || {
            let mut builder = $gpu.stream.launch_builder($gpu.function(name));
            $( cudarc::driver::PushKernelArg::arg(&mut builder, &$arg); )+
            anyhow::Context::with_context(builder.launch($cfg).map(|_| ()), || format!("cannot launch {name}"))
        })
    }};
}

/// Threads per warp: the kernels' warp reductions (`warp_sum`) assume 32 lanes.
pub const WARP_SIZE: u32 = 32;

/// A size as the kernels' `int`.
fn int(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| anyhow!("{what} = {n} does not fit the kernels' 32-bit int"))
}

/// `threads` threads per block, enough blocks for `n` threads.
fn grid(n: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(threads as usize).max(1) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

// After `launch!` and the helpers above, which the launch code of each layer uses.
pub mod adamw;
pub mod attention;
pub mod cublaslt;
pub mod encoder;
pub mod gelu;
pub mod global_norm;
pub mod layernorm;
pub mod matmul;
pub mod residual;
pub mod softmax_crossentropy;
