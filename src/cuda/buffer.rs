//! Device memory: `DeviceBuffer` owns an allocation, `Dev` is a view of one (a device address and a
//! length, the GPU's `&[T]`). Below `context.rs`, which allocates them, and `cublaslt_handle.rs`,
//! whose workspace is one.

use anyhow::{Context, Result};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, ValidAsZeroBits};
use std::marker::PhantomData;
use std::sync::Arc;

/// A view of `len` numbers of type `T` in device memory, starting at device address `ptr`: the GPU's
/// `&[T]`. It is only made from a live `DeviceBuffer` (or cut from such a view), and cutting checks
/// the bounds, so the kernels receive in-bounds addresses as long as the buffer outlives the view.
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
    /// The device address, as a kernel argument.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Elements `start..start + len`.
    pub fn slice(self, start: usize, len: usize) -> Dev<T> {
        let end = start.checked_add(len).filter(|&end| end <= self.len);
        assert!(end.is_some(), "device slice {start} + {len} out of bounds (length {})", self.len);
        Dev { ptr: self.ptr + (start * std::mem::size_of::<T>()) as u64, len, _type: PhantomData }
    }
    /// Layer `l`'s part of a tensor stacked over `n` layers (`at` in `src/cpu/gpt2.rs`).
    pub fn layer(self, l: usize, n: usize) -> Dev<T> {
        let size = self.len / n;
        self.slice(l * size, size)
    }
    /// Cuts consecutive views of the given sizes from the start of this one.
    pub fn split<const N: usize>(self, sizes: &[usize; N]) -> [Dev<T>; N] {
        let mut offset = 0;
        std::array::from_fn(|i| {
            let part = self.slice(offset, sizes[i]);
            offset += sizes[i];
            part
        })
    }
}

/// Device memory owned by the host side: allocated zeroed, freed on drop.
pub struct DeviceBuffer<T> {
    /// Owns the allocation (at least one element: CUDA cannot allocate nothing).
    _slice: CudaSlice<T>,
    ptr: u64,
    len: usize,
}

impl<T> DeviceBuffer<T> {
    /// A view of the whole buffer.
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

impl<T: DeviceRepr + ValidAsZeroBits> DeviceBuffer<T> {
    /// `n` zeroed numbers on `stream`'s device (`Gpu::alloc` counts them; this does not).
    pub(crate) fn zeroed(stream: &Arc<CudaStream>, n: usize) -> Result<DeviceBuffer<T>> {
        let slice = stream.alloc_zeros::<T>(n.max(1)).with_context(|| {
            format!("cannot allocate {:.2} GiB on the GPU", (n * std::mem::size_of::<T>()) as f64 / 1073741824.0)
        })?;
        let ptr = {
            let (ptr, _sync) = slice.device_ptr(stream);
            ptr
        };
        Ok(DeviceBuffer { _slice: slice, ptr, len: n })
    }
}
