//! The device: a CUDA context and its stream, the kernels of `kernels/` compiled for it, device
//! buffers and the copies between host and device. The kernel launches are in `kernels/`.
//!
//! Device memory is allocated once (`DeviceBuffer`, freed when dropped) and then handled through
//! `Dev` views: a device address and a length, cheap to copy and to cut into named tensors, like the
//! slices of the CPU path. All work goes to one stream, in order, so no view can be read before the
//! kernel writing it has finished.

pub use super::buffer::{Dev, DeviceBuffer};
use super::cublaslt_handle::{CublasLt, CUBLASLT_DBIAS_SCRATCH, CUBLASLT_WORKSPACE_BYTES};
use super::kernels::{compile_cached, SOURCES};
use super::{sum_by_name, KernelTime};
use anyhow::{bail, Context, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::ValidAsZeroBits;
use cudarc::driver::{result, sys, CudaContext, CudaEvent, CudaFunction, CudaStream, DeviceRepr};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which kernels do the matrix multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matmul {
    /// `kernels/matmul.cu` version 3: shared-memory tiles and 8x8 register blocks, wide loads, double
    /// buffering, split-K for the weight gradient (the default).
    Handwritten,
    /// `kernels/matmul.cu` version 1: one thread per output (slow; the reference on the GPU).
    Naive,
    /// cuBLAS: SGEMM in fp32, with the bias and dbias from `kernels/matmul.cu`; in bf16, cuBLASLt
    /// with the bias, the GELU and the bias gradient fused into the GEMMs (`kernels/cublaslt.rs`).
    Cublas,
}

/// One GPU, ready to run the kernels of `kernels/`.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    /// The card's name, as the driver reports it (e.g. "NVIDIA H100 80GB HBM3").
    pub name: String,
    /// The compute capability, e.g. (9, 0) for Hopper.
    pub compute_capability: (i32, i32),
    /// The number of streaming multiprocessors (sizes the grids of the grid-stride kernels).
    pub num_sms: u32,
    /// Which kernels do the matrix multiplies; may be changed at any time.
    pub matmul: Matmul,
    /// A cuBLAS handle on `stream`, made when `matmul` is `Cublas` at creation.
    pub(crate) blas: Option<CudaBlas>,
    /// A cuBLASLt handle with its workspace, made with `blas` (the bf16 matmuls of `--matmul cublas`).
    pub(crate) lt: Option<CublasLt>,
    /// Every kernel of `SOURCES`, by name.
    functions: HashMap<&'static str, CudaFunction>,
    /// One double for `global_norm`.
    pub(crate) norm_scratch: DeviceBuffer<f64>,
    /// The split-K partial results of the hand-written matmul's weight gradient (`matmul_splitk_slices`):
    /// none until `reserve_matmul_scratch` (then dweight is not split).
    pub(crate) matmul_scratch: Option<DeviceBuffer<f32>>,
    /// Seconds spent compiling (NVRTC; cached within a process) and loading the kernels.
    pub compile_seconds: f64,
    /// Bytes requested from `alloc` so far (`tests/cuda.rs` checks the model's against `src/memory.rs`'s plan).
    allocated: std::sync::atomic::AtomicUsize,
    /// While profiling (`start_profile`), each timed launch's name and the events recorded around it.
    profile: Mutex<Option<Vec<Timed>>>,
}

/// A timed launch: the kernel's name, the events recorded before and after it.
type Timed = (String, CudaEvent, CudaEvent);

impl Gpu {
    /// Opens device `ordinal` and compiles every kernel for its architecture. Call
    /// `super::availability()` first: cudarc panics if libcuda or libnvrtc is missing.
    pub fn new(ordinal: usize, matmul: Matmul) -> Result<Gpu> {
        let ctx = CudaContext::new(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))?;
        // SAFETY: all our work goes to one stream, so cudarc's cross-stream event tracking is not
        // needed; the raw device addresses in `Dev` views are used on that same stream only.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let name = ctx.name().context("cannot read the device name")?;
        let compute_capability = ctx.compute_capability().context("cannot read the compute capability")?;
        let num_sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .context("cannot read the number of SMs")? as u32;

        // compile every kernel to machine code (a cubin) for this device's architecture, e.g. sm_90 on an H100
        let arch = format!("sm_{}{}", compute_capability.0, compute_capability.1);
        let started = Instant::now();
        let mut functions = HashMap::new();
        for source in &SOURCES {
            let cubin = compile_cached(source, &arch)?;
            let module = ctx
                .load_module(Ptx::from_binary(cubin))
                .with_context(|| format!("cannot load the {arch} cubin of kernels/{}", source.file))?;
            for &kernel in source.kernels {
                let f =
                    module.load_function(kernel).with_context(|| format!("no kernel {kernel} in {}", source.file))?;
                functions.insert(kernel, f);
            }
        }
        let compile_seconds = started.elapsed().as_secs_f64();

        let (blas, lt) = if matmul == Matmul::Cublas {
            let (blas, lt) = new_cublas(&stream)?;
            (Some(blas), Some(lt))
        } else {
            (None, None)
        };
        let norm_scratch = DeviceBuffer::zeroed(&stream, 1)?;
        Ok(Gpu {
            ctx,
            stream,
            name,
            compute_capability,
            num_sms,
            matmul,
            blas,
            lt,
            functions,
            norm_scratch,
            matmul_scratch: None,
            compile_seconds,
            allocated: Default::default(),
            profile: Mutex::new(None),
        })
    }

    /// Makes the cuBLAS and cuBLASLt handles if there are none yet (to switch `matmul` to `Cublas` later).
    pub fn enable_cublas(&mut self) -> Result<()> {
        if self.blas.is_none() || self.lt.is_none() {
            let (blas, lt) = new_cublas(&self.stream)?;
            self.blas = Some(blas);
            self.lt = Some(lt);
        }
        Ok(())
    }

    /// Gives the hand-written matmul `floats` fp32 numbers of scratch for split-K's partial results
    /// (allocated with `alloc`, so counted; `MemoryPlan`'s "matmul split-K partials" says how many
    /// the model takes). Keeps the current scratch if it is at least that large.
    pub fn reserve_matmul_scratch(&mut self, floats: usize) -> Result<()> {
        if floats > 0 && self.matmul_scratch.as_ref().is_none_or(|s| s.len() < floats) {
            self.matmul_scratch = None;
            self.matmul_scratch = Some(self.alloc(floats)?);
        }
        Ok(())
    }

    /// The compiled kernel `name` (one of the names listed in `SOURCES`).
    pub(crate) fn function(&self, name: &str) -> &CudaFunction {
        self.functions.get(name).unwrap_or_else(|| panic!("kernel {name} is not listed in SOURCES"))
    }

    /// Starts timing every kernel launch and cuBLAS call with CUDA events (for `bench --device
    /// cuda`'s per-kernel table); `finish_profile` ends it. Two events per launch cost a little, so
    /// profile separate steps from the ones that measure the step time.
    pub fn start_profile(&self) {
        *self.profile.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// Waits for the queued work, ends profiling and returns the time of each kernel since
    /// `start_profile`, summed by name, in launch order.
    pub fn finish_profile(&self) -> Result<Vec<KernelTime>> {
        let samples = self.profile.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        self.synchronize()?;
        let mut timed = Vec::with_capacity(samples.len());
        for (name, start, end) in samples {
            let ms = start.elapsed_ms(&end).with_context(|| format!("cannot read the CUDA event times of {name}"))?;
            timed.push((name, ms as f64));
        }
        Ok(sum_by_name(timed))
    }

    /// Runs `queue` (which queues one kernel or cuBLAS call on the stream); while profiling,
    /// between two recorded events.
    pub(crate) fn timed(&self, name: &str, queue: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.profile.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return queue();
        }
        let timing = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self.stream.record_event(timing).context("cannot record a CUDA event")?;
        queue()?;
        let end = self.stream.record_event(timing).context("cannot record a CUDA event")?;
        if let Some(samples) = self.profile.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            samples.push((name.to_string(), start, end));
        }
        Ok(())
    }

    /// Free and total device memory, in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().context("cannot read the free GPU memory")
    }

    /// Bytes requested from `alloc` so far.
    pub fn allocated_bytes(&self) -> usize {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `n` zeroed numbers of device memory.
    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<DeviceBuffer<T>> {
        self.allocated.fetch_add(n * std::mem::size_of::<T>(), std::sync::atomic::Ordering::Relaxed);
        DeviceBuffer::zeroed(&self.stream, n)
    }

    /// Copies `src` into `dst` (same length) and waits until it is there.
    pub fn upload<T: DeviceRepr>(&self, dst: Dev<T>, src: &[T]) -> Result<()> {
        if dst.len() != src.len() {
            bail!("cannot copy {} numbers into a device buffer of {}", src.len(), dst.len());
        }
        self.ctx.bind_to_thread()?;
        // SAFETY: dst is a view of a live allocation holding src.len() numbers of type T (checked above),
        // and we wait for the copy to finish before src can go away.
        unsafe { result::memcpy_htod_async(dst.ptr(), src, self.stream.cu_stream()) }.context("host-to-device copy")?;
        self.synchronize()
    }

    /// Copies `src` to the host, after everything queued before it has finished.
    pub fn download<T: DeviceRepr + Default + Clone>(&self, src: Dev<T>) -> Result<Vec<T>> {
        let mut out = vec![T::default(); src.len()];
        self.ctx.bind_to_thread()?;
        // SAFETY: src is a view of a live allocation of src.len() numbers and out has that length;
        // we wait for the copy to finish before reading or freeing out.
        unsafe { result::memcpy_dtoh_async(&mut out, src.ptr(), self.stream.cu_stream()) }
            .context("device-to-host copy")?;
        self.synchronize()?;
        Ok(out)
    }

    /// Sets every number of `dst` to zero (queued on the stream).
    pub fn zero<T>(&self, dst: Dev<T>) -> Result<()> {
        self.ctx.bind_to_thread()?;
        // SAFETY: dst is a view of a live allocation of dst.len() numbers of size_of::<T>() bytes.
        unsafe { result::memset_d8_async(dst.ptr(), 0, dst.len() * std::mem::size_of::<T>(), self.stream.cu_stream()) }
            .context("memset")?;
        Ok(())
    }

    /// Waits for everything queued so far; reports errors of earlier kernels.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().context("a CUDA kernel or copy failed")
    }
}

/// The cuBLAS handle (fp32 SGEMM) and the cuBLASLt one with its workspace (the bf16 GEMMs), on `stream`.
fn new_cublas(stream: &Arc<CudaStream>) -> Result<(CudaBlas, CublasLt)> {
    // cudarc panics on first use if libcublas or libcublasLt is missing: find them first
    super::libs::load(super::libs::CudaLib::Cublas).context("--matmul cublas cannot start")?;
    let blas = CudaBlas::new(stream.clone()).context("cannot create a cuBLAS handle")?;
    // allocated once, here, outside the model's memory plan (like cuBLAS's own workspace)
    let workspace = DeviceBuffer::zeroed(stream, CUBLASLT_WORKSPACE_BYTES).context("cuBLASLt's workspace")?;
    let dbias_scratch =
        DeviceBuffer::zeroed(stream, CUBLASLT_DBIAS_SCRATCH).context("cuBLASLt's bias-gradient scratch")?;
    Ok((blas, CublasLt::new(workspace, dbias_scratch)?))
}
