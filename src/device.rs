//! Which device runs, chosen once for every command: the CPU or a CUDA GPU (`select_device`), the
//! CPU's layers (`cpu_kernels`), the numerics (`choose_precision`), and the `Backend` that trains or
//! evaluates there (`make_backend`). The commands (`train`, `eval`, `bench`) call these; the backends
//! themselves are `src/cpu/backend.rs` and `src/cuda/backend.rs`, side by side above `src/backend.rs`.

use crate::backend::Backend;
use crate::choice::Choice;
use crate::config::ModelConfig;
use crate::cpu::backend::CpuBackend;
use crate::cpu::gpt2::CpuKernels;
use crate::cuda::{CudaBackend, Matmul};
use crate::precision::Precision;
use anyhow::{bail, Result};

/// Where to run, as asked (`Auto`) or as chosen (`Cpu`, `Cuda`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The GPU when one is usable, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

impl Choice for Device {
    const WHAT: &'static str = "device";
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (Device::Auto, "auto", "the GPU when one is usable, else the CPU"),
        (Device::Cpu, "cpu", "the CPU"),
        (Device::Cuda, "cuda", "CUDA GPU 0 (an error if none is usable)"),
    ];
}

/// Which device `device` means on this machine: Cpu or Cuda, saying which and why in one line,
/// the first the command prints. `Cuda` that cannot start is an error naming the missing library
/// and every place it was looked for (`src/cuda/libs.rs`); `Auto` then runs on the CPU and says so,
/// with the reason.
pub fn select_device(device: Device) -> Result<Device> {
    if device == Device::Cpu {
        return Ok(Device::Cpu);
    }
    match (device, crate::cuda::why_unavailable()) {
        (_, Ok(n)) => {
            eprintln!("device: CUDA GPU 0 (libcuda, libnvrtc and {n} GPU{} found)", if n == 1 { "" } else { "s" });
            Ok(Device::Cuda)
        }
        (Device::Cuda, Err(why)) => bail!("--device cuda, but CUDA is not usable here: {why}"),
        (_, Err(why)) => {
            eprintln!("device: CPU (--device auto found no usable GPU: {})", why.short());
            Ok(Device::Cpu)
        }
    }
}

/// `--kernels`, which picks the CPU's layers, or the fast ones when it is not given. On the GPU
/// (`device` from `select_device`) the CPU layers do not run (but for the samples printed while
/// training, which take the fast ones): asking for them there is an error rather than silently
/// ignored, so that no one believes a GPU run used the readable reference layers.
pub fn cpu_kernels(given: Option<CpuKernels>, device: Device) -> Result<CpuKernels> {
    match (given, device) {
        (Some(kernels), Device::Cuda) => bail!(
            "--kernels {} picks the CPU's layers, but this run is on the GPU, which runs kernels/*.cu \
             (--matmul picks its matmul kernels): drop --kernels, or add --device cpu to run the CPU's layers",
            format!("{kernels:?}").to_lowercase()
        ),
        (given, _) => Ok(given.unwrap_or_default()),
    }
}

/// `--precision`, or when it is not given the default for `device` (Cpu or Cuda, from
/// `select_device`; for a GPU, by its compute capability: `precision::default_precision`) with why,
/// for the device line.
pub fn choose_precision(given: Option<Precision>, device: Device) -> Result<(Precision, Option<String>)> {
    if let Some(precision) = given {
        return Ok((precision, None));
    }
    let compute_capability = match device {
        Device::Cuda => Some(crate::cuda::compute_capability(0)?),
        _ => None,
    };
    let (precision, why) = crate::precision::default_precision(compute_capability);
    Ok((precision, Some(format!("{why}; --precision to choose"))))
}

/// How a backend computes: its device (Cpu or Cuda, from `select_device`), the GPU's matmul, the
/// CPU's layers, the numerics, and why those numerics when the user did not choose.
#[derive(Clone, Debug)]
pub struct Compute {
    pub device: Device,
    pub matmul: Matmul,
    pub kernels: CpuKernels,
    pub precision: Precision,
    pub precision_note: Option<String>,
}

/// The backend that runs `config` with `params` as `compute` says, sized for batches of (batch, seq)
/// (the GPU allocates them now; the CPU checks that they fit in memory).
pub fn make_backend(
    compute: &Compute,
    config: ModelConfig,
    params: Vec<f32>,
    batch: usize,
    seq: usize,
) -> Result<Box<dyn Backend>> {
    Ok(match compute.device {
        Device::Cuda => {
            let mut backend = CudaBackend::new(0, compute.matmul, compute.precision, config, &params, batch, seq)?;
            backend.precision_note = compute.precision_note.clone();
            Box::new(backend)
        }
        _ => {
            crate::memory::check_cpu_memory(&config, batch, seq, compute.precision)?;
            let mut backend = CpuBackend::new(config, params);
            backend.model.kernels = compute.kernels;
            backend.model.set_precision(compute.precision);
            backend.precision_note = compute.precision_note.clone();
            Box::new(backend)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_on_the_gpu_is_a_clear_error_and_picks_the_cpu_layers_on_the_cpu() {
        let err = cpu_kernels(Some(CpuKernels::Reference), Device::Cuda).expect_err("an error on the GPU");
        println!("{err}");
        assert!(err.to_string().contains("--device cpu"), "{err}");
        assert_eq!(cpu_kernels(None, Device::Cuda).unwrap(), CpuKernels::Fast);
        assert_eq!(cpu_kernels(Some(CpuKernels::Reference), Device::Cpu).unwrap(), CpuKernels::Reference);
        assert_eq!(cpu_kernels(None, Device::Cpu).unwrap(), CpuKernels::Fast);
    }

    #[test]
    fn precision_given_is_kept_and_defaults_to_fp32_on_the_cpu() {
        // a given --precision needs no device query (so this runs without a GPU)
        assert_eq!(choose_precision(Some(Precision::Bf16), Device::Cuda).unwrap(), (Precision::Bf16, None));
        let (precision, why) = choose_precision(None, Device::Cpu).unwrap();
        println!("CPU: {precision} ({})", why.as_deref().unwrap_or(""));
        assert_eq!(precision, Precision::Fp32);
        assert!(why.is_some_and(|w| w.contains("CPU")));
    }

    #[test]
    fn device_matmul_and_kernel_names_are_the_flag_values() {
        assert_eq!(Device::parse("cuda"), Ok(Device::Cuda));
        assert!(Device::parse("gpu").unwrap_err().contains("auto, cpu, cuda"));
        assert_eq!(Matmul::parse("cublas"), Ok(Matmul::Cublas));
        assert_eq!(CpuKernels::parse("reference"), Ok(CpuKernels::Reference));
        assert_eq!(CpuKernels::default().name(), "fast");
    }
}
