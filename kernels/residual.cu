// The residual connection: out = inp1 + inp2. Twin: src/cpu/residual.rs.
// Templates over the storage type floatX (float or bf16: kernels/bf16.cuh), named for each below.

// out (N) = inp1 (N) + inp2 (N): one thread per number.
template <typename floatX>
__device__ void residual_forward_t(floatX* out, const floatX* inp1, const floatX* inp2, long long N) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    store(&out[i], to_float(inp1[i]) + to_float(inp2[i]));
}

// Backward: an addition passes its gradient to both inputs unchanged. Accumulates (+=): in bf16, the
// value there is read, the gradient added in fp32, and the sum rounded once as it is written back.
template <typename floatX>
__device__ void residual_backward_t(floatX* dinp1, floatX* dinp2, const floatX* dout, long long N) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float d = to_float(dout[i]);
    store(&dinp1[i], to_float(dinp1[i]) + d);
    store(&dinp2[i], to_float(dinp2[i]) + d);
}

extern "C" __global__ void residual_forward(float* out, const float* inp1, const float* inp2, long long N) {
    residual_forward_t(out, inp1, inp2, N);
}
extern "C" __global__ void residual_backward(float* dinp1, float* dinp2, const float* dout, long long N) {
    residual_backward_t(dinp1, dinp2, dout, N);
}
extern "C" __global__ void residual_forward_bf16(bf16* out, const bf16* inp1, const bf16* inp2, long long N) {
    residual_forward_t(out, inp1, inp2, N);
}
extern "C" __global__ void residual_backward_bf16(bf16* dinp1, bf16* dinp2, const bf16* dout, long long N) {
    residual_backward_t(dinp1, dinp2, dout, N);
}
