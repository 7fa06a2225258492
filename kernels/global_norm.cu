// The global L2 norm of the gradients, for gradient clipping. Twin: global_norm in src/optim.rs.
//
// Like the CPU, the squares are summed in double precision, so 124M of them add up exactly enough.
// The host zeroes out, launches this, reads back the one double and takes its square root; the clip
// is then a scale passed to adamw_update (adamw.cu).

__device__ double warp_sum_double(double v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}

// out (1) += the sum of grads[i]^2 over grads (N). Each thread sums a grid-strided share, each block
// reduces its threads' sums (warp shuffles, then 32 doubles of shared memory), and one thread per
// block adds the block's sum to out atomically. blockDim.x must be a multiple of 32.
extern "C" __global__ void global_norm_squared(double* out, const float* grads, long long N) {
    __shared__ double scratch[32];
    double sum = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += (long long)gridDim.x * blockDim.x) {
        double g = grads[i];
        sum += g * g;
    }
    sum = warp_sum_double(sum);
    int lane = threadIdx.x % 32;
    int warp = threadIdx.x / 32;
    if (lane == 0) scratch[warp] = sum;
    __syncthreads();
    if (warp == 0) {
        sum = lane < blockDim.x / 32 ? scratch[lane] : 0.0;
        sum = warp_sum_double(sum);
        if (lane == 0) atomicAdd(out, sum);
    }
}
