// GELU with the tanh approximation (https://arxiv.org/abs/1606.08415), as GPT-2 uses it:
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// Twin: src/cpu/gelu.rs. Templates over the storage type floatX (float or bf16: kernels/bf16.cuh).

#define SQRT_2_OVER_PI 0.7978846f
#define GELU_COEFF 0.044715f

// out (N) = gelu(inp (N)), elementwise: one thread per number.
template <typename floatX>
__device__ void gelu_forward_t(floatX* out, const floatX* inp, long long N) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float x = to_float(inp[i]);
    float cube = GELU_COEFF * x * x * x;
    store(&out[i], 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + cube))));
}

// Backward: dinp (N) += gelu'(inp) * dout. With u = sqrt(2/pi) (x + 0.044715 x^3):
//   gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
template <typename floatX>
__device__ void gelu_backward_t(floatX* dinp, const floatX* inp, const floatX* dout, long long N) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float x = to_float(inp[i]);
    float u = SQRT_2_OVER_PI * (x + GELU_COEFF * x * x * x);
    float tanh_u = tanhf(u);
    float sech2_u = 1.0f - tanh_u * tanh_u;
    float local_grad = 0.5f * (1.0f + tanh_u) + 0.5f * x * sech2_u * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_COEFF * x * x);
    store(&dinp[i], to_float(dinp[i]) + local_grad * to_float(dout[i]));
}

extern "C" __global__ void gelu_forward(float* out, const float* inp, long long N) { gelu_forward_t(out, inp, N); }
extern "C" __global__ void gelu_backward(float* dinp, const float* inp, const float* dout, long long N) {
    gelu_backward_t(dinp, inp, dout, N);
}
extern "C" __global__ void gelu_forward_bf16(bf16* out, const bf16* inp, long long N) { gelu_forward_t(out, inp, N); }
extern "C" __global__ void gelu_backward_bf16(bf16* dinp, const bf16* inp, const bf16* dout, long long N) {
    gelu_backward_t(dinp, inp, dout, N);
}
