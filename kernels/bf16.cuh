// bf16 storage for the kernels: the one piece of CUDA C++ every kernels/*.cu shares. It is not a
// header the kernels #include: src/cuda/kernels/mod.rs puts it in front of each kernel file before
// NVRTC compiles it (dev/cuda_emu/run.sh does the same), so the kernels still need no CUDA header
// (no cuda_bf16.h) and NVRTC needs nothing but libnvrtc.
//
// What bf16 training means in this project is written once, in src/precision.rs; this file is that
// file's to_bf16_bits and from_bf16_bits in CUDA C++, bit for bit:
//   - widening (bf16 -> fp32) is exact: the 16 bits go back on top, the dropped mantissa bits are 0;
//   - narrowing (fp32 -> bf16) rounds to the nearest bf16 number, ties to even, and keeps a NaN a NaN.
//
// A kernel is written once, as a template over its storage type floatX (float or bf16, llm.c's name):
// it reads every stored number with to_float(...) and writes every stored output with store(...).
// For floatX = float both are the plain load and store the fp32 kernel always had, so the fp32 kernel
// is the same code as before; for floatX = bf16 the read widens and the write rounds, once, when the
// value is written (the "round each output once" of src/precision.rs). The arithmetic in between is
// fp32 either way. Each .cu then names its two instantiations as extern "C" kernels: `gelu_forward`
// (fp32) and `gelu_forward_bf16`.

#ifndef GPT2_BF16_CUH
#define GPT2_BF16_CUH

// A bf16 number, as its 16 bits. A struct rather than an unsigned short on purpose: C++ would
// silently turn `out[i] = x` with a float x into an integer conversion; with a struct that line does
// not compile, so every write must go through store() and is rounded.
struct bf16 {
    unsigned short bits;
};

// bf16 -> fp32, exact: from_bf16_bits in src/precision.rs.
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float((unsigned int)x.bits << 16); }
// The fp32 kernels read their numbers as they are.
__device__ __forceinline__ float to_float(float x) { return x; }

// fp32 -> bf16, round to nearest, ties to even: to_bf16_bits in src/precision.rs, which explains it.
// Adding 0x7FFF plus the last kept bit (lsb) and cutting the low 16 bits off rounds up exactly when
// the dropped half is above 0x8000, or equal to it with an odd lsb. A NaN is handled first (its
// payload might sit only in the dropped bits, and the addition could carry into the sign): its top
// bits, with the quiet bit set.
__device__ __forceinline__ bf16 round_bf16(float x) {
    unsigned int bits = __float_as_uint(x);
    bf16 out;
    if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: exponent all ones, mantissa not zero
        out.bits = (unsigned short)((bits >> 16) | 0x0040u);
        return out;
    }
    unsigned int lsb = (bits >> 16) & 1u;
    out.bits = (unsigned short)((bits + 0x7fffu + lsb) >> 16);
    return out;
}

// Writes x to *p: as it is for fp32, rounded to bf16 for bf16.
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(bf16* p, float x) { *p = round_bf16(x); }

#endif  // GPT2_BF16_CUH
