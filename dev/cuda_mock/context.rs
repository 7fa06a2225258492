//! Stand-in for src/cuda/context.rs (dev/cuda_mock/run.sh): host memory behind the same API.
use anyhow::Result;
use std::marker::PhantomData;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matmul {
    Handwritten,
    Naive,
    Cublas,
}

#[derive(Debug)]
pub struct Dev<T> {
    ptr: u64,
    len: usize,
    _type: PhantomData<T>,
}
impl<T> Clone for Dev<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Dev<T> {}
impl<T> Dev<T> {
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn slice(self, start: usize, len: usize) -> Dev<T> {
        assert!(start + len <= self.len, "device slice {start}..{} out of bounds (length {})", start + len, self.len);
        Dev { ptr: self.ptr + (start * std::mem::size_of::<T>()) as u64, len, _type: PhantomData }
    }
    pub fn layer(self, l: usize, n: usize) -> Dev<T> {
        let size = self.len / n;
        self.slice(l * size, size)
    }
    pub fn split<const N: usize>(self, sizes: &[usize; N]) -> [Dev<T>; N] {
        let mut offset = 0;
        std::array::from_fn(|i| {
            let part = self.slice(offset, sizes[i]);
            offset += sizes[i];
            part
        })
    }
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn host<'a>(self) -> &'a mut [T] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut T, self.len) }
    }
}

pub struct DeviceBuffer<T> {
    _data: Vec<T>,
    ptr: u64,
    len: usize,
}
impl<T> DeviceBuffer<T> {
    pub fn all(&self) -> Dev<T> {
        Dev { ptr: self.ptr, len: self.len, _type: PhantomData }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub struct Gpu {
    pub name: String,
    pub compute_capability: (i32, i32),
    pub num_sms: u32,
    pub matmul: Matmul,
    pub compile_seconds: f64,
    /// Bytes handed out by `alloc` so far (what `tests/cuda.rs` compares with the memory plan).
    allocated: std::sync::atomic::AtomicUsize,
    matmul_scratch: Option<DeviceBuffer<f32>>,
}

impl Gpu {
    pub fn new(_ordinal: usize, matmul: Matmul) -> Result<Gpu> {
        Ok(Gpu { name: "MOCK H100 PCIe".into(), compute_capability: (9, 0), num_sms: 132, matmul, compile_seconds: 0.0, allocated: Default::default(), matmul_scratch: None })
    }
    pub fn enable_cublas(&mut self) -> Result<()> {
        Ok(())
    }
    /// The real one allocates the split-K scratch of the matmul; the stand-ins' matmul does not
    /// split, but the bytes are allocated all the same, so the memory-plan test counts them.
    pub fn reserve_matmul_scratch(&mut self, floats: usize) -> Result<()> {
        if floats > 0 && self.matmul_scratch.as_ref().is_none_or(|s| s.len() < floats) {
            self.matmul_scratch = None;
            self.matmul_scratch = Some(self.alloc(floats)?);
        }
        Ok(())
    }
    pub fn memory(&self) -> Result<(usize, usize)> {
        Ok((80 << 30, 80 << 30))
    }
    pub fn allocated_bytes(&self) -> usize {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn alloc<T: Default + Clone>(&self, n: usize) -> Result<DeviceBuffer<T>> {
        self.allocated.fetch_add(n * std::mem::size_of::<T>(), std::sync::atomic::Ordering::Relaxed);
        let mut data = vec![T::default(); n.max(1)];
        let ptr = data.as_mut_ptr() as u64;
        Ok(DeviceBuffer { _data: data, ptr, len: n })
    }
    pub fn upload<T: Clone>(&self, dst: Dev<T>, src: &[T]) -> Result<()> {
        assert_eq!(dst.len(), src.len());
        dst.host().clone_from_slice(src);
        Ok(())
    }
    pub fn download<T: Default + Clone>(&self, src: Dev<T>) -> Result<Vec<T>> {
        Ok(src.host().to_vec())
    }
    pub fn zero<T: Default + Clone>(&self, dst: Dev<T>) -> Result<()> {
        dst.host().fill(T::default());
        Ok(())
    }
    pub fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// The stand-ins run on the host and time nothing: the profile is empty.
    pub fn start_profile(&self) {}
    pub fn finish_profile(&self) -> Result<Vec<crate::cuda::KernelTime>> {
        Ok(Vec::new())
    }
}
