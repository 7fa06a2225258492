// The loss: softmax over the vocabulary, then cross-entropy against the next token.
// Twin: src/cpu/softmax_crossentropy.rs.
//
// Logits are computed over the padded vocabulary Vp, but only the first V are real tokens: the
// softmax ignores columns V..Vp (their probability is 0). The backward pass is fused: the gradient
// of cross-entropy through softmax is simply probs - one_hot(target).

__device__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}

__device__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, offset));
    return v;
}

// The sum (or the maximum) of v over the whole block, returned to every thread. blockDim.x must be a
// multiple of 32; scratch is 32 floats of shared memory. Each warp reduces with shuffles, the warps'
// results meet in scratch, and every warp then reduces those.
__device__ float block_reduce(float v, bool is_max, float* scratch) {
    int lane = threadIdx.x % 32;
    int warp = threadIdx.x / 32;
    int num_warps = blockDim.x / 32;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();  // a previous call may still be reading scratch
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float identity = is_max ? __int_as_float(0xff800000) : 0.0f;
    v = lane < num_warps ? scratch[lane] : identity;
    return is_max ? warp_max(v) : warp_sum(v);
}

// probs (BT, Vp) = softmax over the first V columns of logits (BT, Vp); columns V..Vp get 0.
// One block per row, its threads striding over the columns.
extern "C" __global__ void softmax_forward(float* probs, const float* logits, int BT, int V, int Vp) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= BT) return;
    const float* l = logits + (size_t)row * Vp;
    float* p = probs + (size_t)row * Vp;
    // subtract the max for numerical stability
    float maxval = __int_as_float(0xff800000);
    for (int i = threadIdx.x; i < V; i += blockDim.x) maxval = fmaxf(maxval, l[i]);
    maxval = block_reduce(maxval, true, scratch);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float e = expf(l[i] - maxval);
        p[i] = e;
        sum += e;
    }
    sum = block_reduce(sum, false, scratch);
    for (int i = threadIdx.x; i < V; i += blockDim.x) p[i] = p[i] / sum;
    for (int i = V + threadIdx.x; i < Vp; i += blockDim.x) p[i] = 0.0f;
}

// losses (BT) = -log(probs[target]) for each position, with targets (BT) and probs (BT, Vp).
// One thread per position.
extern "C" __global__ void crossentropy_forward(float* losses, const float* probs, const unsigned int* targets, int BT,
                                                int Vp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= BT) return;
    losses[i] = -logf(probs[(size_t)i * Vp + targets[i]]);
}

// Fused backward of softmax + cross-entropy: dlogits (BT, Vp) += (probs - one_hot(target)) * dloss,
// given dlosses (BT) (1/(B*T) each for a mean loss). Padded columns get no gradient.
// One block per row, its threads striding over the columns.
extern "C" __global__ void crossentropy_softmax_backward(float* dlogits, const float* dlosses, const float* probs,
                                                         const unsigned int* targets, int BT, int V, int Vp) {
    int row = blockIdx.x;
    if (row >= BT) return;
    float* dl = dlogits + (size_t)row * Vp;
    const float* p = probs + (size_t)row * Vp;
    int target = targets[row];
    float dloss = dlosses[row];
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float indicator = j == target ? 1.0f : 0.0f;
        dl[j] += (p[j] - indicator) * dloss;
    }
}
