// The loss: softmax over the vocabulary, then cross-entropy against the next token, fused as in
// llm.c's fused_classifier: no probabilities are stored. Twin: src/cpu/softmax_crossentropy.rs,
// which explains the split (forward: loss and one log-sum-exp per row; backward: one pass writing
// the gradient over the logits).
//
// Logits are computed over the padded vocabulary Vp, but only the first V are real tokens: the
// softmax ignores columns V..Vp (their probability is 0, their gradient 0).
//
// Templates over the storage type floatX of the logits (float, or bf16 as kernels/bf16.cuh and
// src/precision.rs define it), named for each at the end of the file. In bf16 the logits are read as
// bf16 and everything after that is fp32: the softmax, the log-sum-exp, the losses; only the dlogits
// written over the logits are rounded to bf16.

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

// losses (BT) = lse - logits[target] and lse (BT) = log(sum over the first V columns of exp(logits)),
// from logits (BT, Vp) and targets (BT). One block per row, its threads striding over the columns.
template <typename floatX>
__device__ void crossentropy_forward_t(float* losses, float* lse, const floatX* logits, const unsigned int* targets,
                                       int BT, int V, int Vp) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= BT) return;
    const floatX* l = logits + (size_t)row * Vp;
    // subtract the max before exponentiating, for numerical stability
    float maxval = __int_as_float(0xff800000);
    for (int i = threadIdx.x; i < V; i += blockDim.x) maxval = fmaxf(maxval, to_float(l[i]));
    maxval = block_reduce(maxval, true, scratch);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(to_float(l[i]) - maxval);
    sum = block_reduce(sum, false, scratch);
    if (threadIdx.x == 0) {
        float row_lse = maxval + logf(sum);
        lse[row] = row_lse;
        losses[row] = row_lse - to_float(l[targets[row]]);  // -log softmax(logits)[target]
    }
}

// Fused backward of softmax + cross-entropy, written over the logits: logits (BT, Vp) holds the
// logits on entry and dlogits on return, dlogits[j] = (exp(logits[j] - lse) - [j == target]) * dloss
// for the first V columns and 0 for the padded ones; dlosses, lse and targets (BT).
// One block per row, its threads striding over the columns: each number is read once and written once.
template <typename floatX>
__device__ void crossentropy_softmax_backward_t(floatX* logits, const float* dlosses, const float* lse,
                                                const unsigned int* targets, int BT, int V, int Vp) {
    int row = blockIdx.x;
    if (row >= BT) return;
    floatX* l = logits + (size_t)row * Vp;
    int target = targets[row];
    float row_lse = lse[row], dloss = dlosses[row];
    for (int j = threadIdx.x; j < Vp; j += blockDim.x) {
        float indicator = j == target ? 1.0f : 0.0f;
        store(&l[j], j < V ? (expf(to_float(l[j]) - row_lse) - indicator) * dloss : 0.0f);
    }
}

extern "C" __global__ void crossentropy_forward(float* losses, float* lse, const float* logits,
                                                const unsigned int* targets, int BT, int V, int Vp) {
    crossentropy_forward_t(losses, lse, logits, targets, BT, V, Vp);
}
extern "C" __global__ void crossentropy_softmax_backward(float* logits, const float* dlosses, const float* lse,
                                                         const unsigned int* targets, int BT, int V, int Vp) {
    crossentropy_softmax_backward_t(logits, dlosses, lse, targets, BT, V, Vp);
}
extern "C" __global__ void crossentropy_forward_bf16(float* losses, float* lse, const bf16* logits,
                                                     const unsigned int* targets, int BT, int V, int Vp) {
    crossentropy_forward_t(losses, lse, logits, targets, BT, V, Vp);
}
extern "C" __global__ void crossentropy_softmax_backward_bf16(bf16* logits, const float* dlosses, const float* lse,
                                                              const unsigned int* targets, int BT, int V, int Vp) {
    crossentropy_softmax_backward_t(logits, dlosses, lse, targets, BT, V, Vp);
}
