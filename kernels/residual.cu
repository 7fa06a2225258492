// The residual connection: out = inp1 + inp2. Twin: src/cpu/residual.rs.

// out (N) = inp1 (N) + inp2 (N): one thread per number.
extern "C" __global__ void residual_forward(float* out, const float* inp1, const float* inp2, long long N) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    out[i] = inp1[i] + inp2[i];
}

// Backward: an addition passes its gradient to both inputs unchanged. Accumulates (+=).
extern "C" __global__ void residual_backward(float* dinp1, float* dinp2, const float* dout, long long N) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float d = dout[i];
    dinp1[i] += d;
    dinp2[i] += d;
}
