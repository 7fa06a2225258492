// Layer normalization (https://arxiv.org/abs/1607.06450), as torch's nn.LayerNorm with eps 1e-5.
// Twin: src/cpu/layernorm.rs.
//
// Each row of C numbers is shifted to mean 0 and scaled to variance 1, then scaled and shifted by
// the learned weight and bias. On the GPU one warp (32 threads) handles one row: each thread takes
// every 32nd number, and the row's sums are finished with warp shuffles.
//
// Each kernel is a template over the storage type floatX of the rows, the weight and the bias (float,
// or bf16 as kernels/bf16.cuh and src/precision.rs define it), named twice at the end of the file:
// `layernorm_forward` (fp32) and `layernorm_forward_bf16`. mean and rstd, and the parameter gradients
// dweight and dbias, are fp32 in both.

#define LAYERNORM_EPS 1e-5f

// The sum of v over the 32 threads of a warp, returned to every thread of the warp.
__device__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) {
        v += __shfl_xor_sync(0xffffffff, v, offset);
    }
    return v;
}

// out (BT, C), mean (BT), rstd (BT) from inp (BT, C), weight (C), bias (C).
// One warp per row; blockDim.x must be a multiple of 32.
template <typename floatX>
__device__ void layernorm_forward_t(floatX* out, float* mean, float* rstd, const floatX* inp, const floatX* weight,
                                    const floatX* bias, int BT, int C) {
    int lane = threadIdx.x % 32;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= BT) return;  // the whole warp leaves together, so the shuffles below see all 32 threads
    const floatX* x = inp + (size_t)row * C;
    floatX* out_row = out + (size_t)row * C;
    // calculate the mean
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) sum += to_float(x[i]);
    float m = warp_sum(sum) / C;
    // calculate the variance (without bias correction, as torch does)
    float sq = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float d = to_float(x[i]) - m;
        sq += d * d;
    }
    float v = warp_sum(sq) / C;
    // reciprocal of the standard deviation
    float s = 1.0f / sqrtf(v + LAYERNORM_EPS);
    // normalize, then scale and shift
    for (int i = lane; i < C; i += 32) {
        store(&out_row[i], (to_float(x[i]) - m) * s * to_float(weight[i]) + to_float(bias[i]));
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

// Backward of layernorm_forward. Accumulates (+=) into dinp (BT, C), dweight (C), dbias (C), given
// dout (BT, C) and the forward's inp, weight, mean and rstd.
//
// With n = (x - mean) * rstd and dnorm = dout * weight, the input gradient is
//   dinp = rstd * (dnorm - mean(dnorm) - n * mean(dnorm * n))
// One warp per row, the warps of the grid striding over the rows. dweight and dbias are sums over
// every row: each block first sums its rows into shared memory (2*C floats of dynamic shared memory),
// then adds its partial sums to dweight and dbias with one atomic add per channel.
// In bf16, dinp's old value is read, the row's contribution added in fp32, and the sum rounded once.
template <typename floatX>
__device__ void layernorm_backward_t(floatX* dinp, float* dweight, float* dbias, const floatX* dout,
                                     const floatX* inp, const floatX* weight, const float* mean, const float* rstd,
                                     int BT, int C) {
    extern __shared__ float shared[];
    float* dbias_shared = shared;        // (C)
    float* dweight_shared = shared + C;  // (C)
    for (int i = threadIdx.x; i < 2 * C; i += blockDim.x) shared[i] = 0.0f;
    __syncthreads();

    int lane = threadIdx.x % 32;
    int warps_per_block = blockDim.x / 32;
    int num_warps = gridDim.x * warps_per_block;
    for (int row = blockIdx.x * warps_per_block + threadIdx.x / 32; row < BT; row += num_warps) {
        const floatX* x = inp + (size_t)row * C;
        const floatX* dout_row = dout + (size_t)row * C;
        floatX* dinp_row = dinp + (size_t)row * C;
        float m = mean[row];
        float s = rstd[row];
        // two reductions over the row
        float dnorm_mean = 0.0f;
        float dnorm_norm_mean = 0.0f;
        for (int i = lane; i < C; i += 32) {
            float norm = (to_float(x[i]) - m) * s;
            float dnorm = to_float(weight[i]) * to_float(dout_row[i]);
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean = warp_sum(dnorm_mean) / C;
        dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
        // accumulate the gradients
        for (int i = lane; i < C; i += 32) {
            float norm = (to_float(x[i]) - m) * s;
            float d = to_float(dout_row[i]);
            float dnorm = to_float(weight[i]) * d;
            atomicAdd(&dbias_shared[i], d);
            atomicAdd(&dweight_shared[i], norm * d);
            store(&dinp_row[i], to_float(dinp_row[i]) + (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
        }
    }
    // this block's share of dweight and dbias
    __syncthreads();
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        atomicAdd(&dbias[i], dbias_shared[i]);
        atomicAdd(&dweight[i], dweight_shared[i]);
    }
}

extern "C" __global__ void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                             const float* weight, const float* bias, int BT, int C) {
    layernorm_forward_t(out, mean, rstd, inp, weight, bias, BT, C);
}
extern "C" __global__ void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                              const float* inp, const float* weight, const float* mean,
                                              const float* rstd, int BT, int C) {
    layernorm_backward_t(dinp, dweight, dbias, dout, inp, weight, mean, rstd, BT, C);
}
extern "C" __global__ void layernorm_forward_bf16(bf16* out, float* mean, float* rstd, const bf16* inp,
                                                  const bf16* weight, const bf16* bias, int BT, int C) {
    layernorm_forward_t(out, mean, rstd, inp, weight, bias, BT, C);
}
extern "C" __global__ void layernorm_backward_bf16(bf16* dinp, float* dweight, float* dbias, const bf16* dout,
                                                   const bf16* inp, const bf16* weight, const float* mean,
                                                   const float* rstd, int BT, int C) {
    layernorm_backward_t(dinp, dweight, dbias, dout, inp, weight, mean, rstd, BT, C);
}
