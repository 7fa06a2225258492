// The embedding: each token's vector plus its position's vector.
// Twin: src/cpu/encoder.rs. Compiled at start-up with NVRTC (src/cuda/kernels/mod.rs), no headers.
// Each kernel is a template over its storage type floatX (float, or bf16 as kernels/bf16.cuh and
// src/precision.rs define it), named twice below: `encoder_forward` (fp32) and `encoder_forward_bf16`.

// out (B, T, C) = wte[inp[b, t]] + wpe[t], for tokens inp (B, T), wte (Vp, C), wpe (maxT, C).
// One thread per output number.
template <typename floatX>
__device__ void encoder_forward_t(floatX* out, const unsigned int* inp, const floatX* wte, const floatX* wpe, int B,
                                  int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * C) return;
    size_t bt = idx / C;
    int c = idx % C;
    int t = bt % T;
    size_t tok = inp[bt];
    store(&out[idx], to_float(wte[tok * C + c]) + to_float(wpe[(size_t)t * C + c]));
}

// Backward of encoder_forward: the gradient of each output row flows, unchanged, into the token's
// row of dwte and the position's row of dwpe (parameter gradients: fp32 in both precisions).
// Accumulates (+=). One thread per dout number; several positions can hold the same token (and every
// batch row has the same positions), so the adds are atomic: the order of the additions, and so the
// last bits of the sums, vary from run to run.
template <typename floatX>
__device__ void encoder_backward_t(float* dwte, float* dwpe, const floatX* dout, const unsigned int* inp, int B, int T,
                                   int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * C) return;
    size_t bt = idx / C;
    int c = idx % C;
    int t = bt % T;
    size_t tok = inp[bt];
    float d = to_float(dout[idx]);
    atomicAdd(&dwte[tok * C + c], d);
    atomicAdd(&dwpe[(size_t)t * C + c], d);
}

extern "C" __global__ void encoder_forward(float* out, const unsigned int* inp, const float* wte, const float* wpe,
                                           int B, int T, int C) {
    encoder_forward_t(out, inp, wte, wpe, B, T, C);
}
extern "C" __global__ void encoder_backward(float* dwte, float* dwpe, const float* dout, const unsigned int* inp,
                                            int B, int T, int C) {
    encoder_backward_t(dwte, dwpe, dout, inp, B, T, C);
}
extern "C" __global__ void encoder_forward_bf16(bf16* out, const unsigned int* inp, const bf16* wte, const bf16* wpe,
                                                int B, int T, int C) {
    encoder_forward_t(out, inp, wte, wpe, B, T, C);
}
extern "C" __global__ void encoder_backward_bf16(float* dwte, float* dwpe, const bf16* dout, const unsigned int* inp,
                                                 int B, int T, int C) {
    encoder_backward_t(dwte, dwpe, dout, inp, B, T, C);
}
