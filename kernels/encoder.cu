// The embedding: each token's vector plus its position's vector.
// Twin: src/cpu/encoder.rs. Compiled at start-up with NVRTC (src/cuda/kernels/mod.rs); fp32, no headers.

// out (B, T, C) = wte[inp[b, t]] + wpe[t], for tokens inp (B, T), wte (Vp, C), wpe (maxT, C).
// One thread per output number.
extern "C" __global__ void encoder_forward(float* out, const unsigned int* inp, const float* wte, const float* wpe,
                                           int B, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * C) return;
    size_t bt = idx / C;
    int c = idx % C;
    int t = bt % T;
    size_t tok = inp[bt];
    out[idx] = wte[tok * C + c] + wpe[(size_t)t * C + c];
}

// Backward of encoder_forward: the gradient of each output row flows, unchanged, into the token's
// row of dwte and the position's row of dwpe. Accumulates (+=). One thread per dout number; several
// positions can hold the same token (and every batch row has the same positions), so the adds are
// atomic: the order of the additions, and so the last bits of the sums, vary from run to run.
extern "C" __global__ void encoder_backward(float* dwte, float* dwpe, const float* dout, const unsigned int* inp,
                                            int B, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * C) return;
    size_t bt = idx / C;
    int c = idx % C;
    int t = bt % T;
    size_t tok = inp[bt];
    float d = dout[idx];
    atomicAdd(&dwte[tok * C + c], d);
    atomicAdd(&dwpe[(size_t)t * C + c], d);
}
