// Causal multi-head self-attention (https://arxiv.org/abs/1706.03762), GPT-2 style, computed the
// flash-attention way (https://arxiv.org/abs/2205.14135; the backward as in FlashAttention-2,
// https://arxiv.org/abs/2307.08691). Twin: src/cpu/attention.rs, which explains the math.
//
// The input is the qkv projection (B, T, 3C): for each position, its query, key and value vectors
// side by side, each of C channels split into NH heads of hs = C/NH channels. The forward writes the
// output out (B, T, C) and one number per row, lse (B, NH, T): the log-sum-exp of the row's scores,
// from which every weight is recomputed as p = exp(s - lse). No (T, T) matrix exists anywhere.
//
// How the work is cut (the tile sizes are the consts of src/cuda/kernels/attention.rs):
// - A block loads tiles of 32 (ATTENTION_TILE, one per lane of a warp) keys and values, or queries
//   and output gradients, into shared memory, and ATTENTION_WARPS warps use each tile: that reuse
//   is what the shared memory buys.
// - Inside a warp, the 32 lanes first take one tile entry each (lane j: the score of key j, a dot
//   product over hs channels read from shared memory), then the channels (lane j: channels j, j+32,
//   j+64, j+96), broadcasting the 32 scalars with __shfl_sync. So each thread keeps hs/32 <= 4
//   accumulators per vector in registers (float[MAX_HS / 32]), never a whole head.
// - Tiles in shared memory are (32, MAX_HS + 1): a row stride of 129 floats puts the 32 rows a warp
//   reads at the same column in 32 different banks (a stride of 64 or 128 would put them all in one).
// - The backward, per head: attention_backward_delta computes delta = rowsum(dout * out);
//   attention_backward_dkv gives each warp one key and walks the query tiles that see it, summing dk
//   and dv; attention_backward_dq gives each warp one query and walks the key tiles it sees, summing
//   dq. Each number of dinp is summed by one thread in a fixed order: no atomics, the same result
//   every run. The scores are recomputed in both (FlashAttention-2 does it once and adds dq with
//   atomics; recomputing is the deterministic choice).
// Every tile loop masks positions past T and keys after the query (causal), so T need not be a
// multiple of 32. A later version moves the two dot-product loops onto tensor cores (mma.sync)
// with the same tiles.
//
// Each kernel is a template over the storage type floatX of qkv, out, dout and dinp (float, or bf16
// as kernels/bf16.cuh and src/precision.rs define it), named twice at the end of the file. The tiles
// in shared memory, the scores, the softmax and its statistics (lse, delta) are fp32 in both: a bf16
// number is widened once, when it is staged, and an output rounded once, when it is written.

// The sizes src/cuda/kernels/attention.rs also states (dev/cuda_emu checks that they agree).
#define MAX_HS 128   // ATTENTION_MAX_HS: the largest head size
#define ATT_TILE 32  // ATTENTION_TILE: keys (or queries) per tile, one per lane of a warp
#define ATT_WARPS 8  // ATTENTION_WARPS: warps per block, one query (or key) each
#define ATT_PER_LANE (MAX_HS / ATT_TILE)  // channels of a head per lane
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, offset));
    return v;
}

// The offset of the query (part 0), key (1) or value (2) vector of head h at position (b, t) in inp (B, T, 3C).
__device__ __forceinline__ size_t qkv_offset(int b, int t, int part, int h, int T, int C, int hs) {
    return ((size_t)b * T + t) * 3 * C + (size_t)part * C + (size_t)h * hs;
}

// Loads rows first..first+ATT_TILE-1 of one head's q, k or v (part 0, 1, 2) into tile (ATT_TILE, MAX_HS + 1);
// rows past T are zero. All threads of the block take part.
template <typename floatX>
__device__ void load_qkv_tile(float (*tile)[MAX_HS + 1], const floatX* inp, int b, int first, int part, int h, int T,
                              int C, int hs) {
    for (int i = threadIdx.x; i < ATT_TILE * hs; i += blockDim.x) {
        int r = i / hs, ch = i % hs;
        int t = first + r;
        tile[r][ch] = t < T ? to_float(inp[qkv_offset(b, t, part, h, T, C, hs) + ch]) : 0.0f;
    }
}

// The same for a (B, T, C) tensor (out or dout), head h.
template <typename floatX>
__device__ void load_btc_tile(float (*tile)[MAX_HS + 1], const floatX* x, int b, int first, int h, int T, int C,
                              int hs) {
    for (int i = threadIdx.x; i < ATT_TILE * hs; i += blockDim.x) {
        int r = i / hs, ch = i % hs;
        int t = first + r;
        tile[r][ch] = t < T ? to_float(x[((size_t)b * T + t) * C + (size_t)h * hs + ch]) : 0.0f;
    }
}

// out (B, T, C) and lse (B, NH, T) from inp (B, T, 3C).
// Grid (ceil(T / ATTENTION_WARPS), B * NH), ATTENTION_WARPS warps a block, one query row a warp.
// Each warp keeps its row's running maximum m, sum l and (unnormalized) output o, as the CPU does,
// and updates them once per tile of 32 keys (the online softmax).
template <typename floatX>
__device__ void attention_forward_t(floatX* out, float* lse, const floatX* inp, int B, int T, int C, int NH) {
    __shared__ float q_s[ATT_WARPS][MAX_HS];  // this block's query rows
    __shared__ float k_s[ATT_TILE][MAX_HS + 1];
    __shared__ float v_s[ATT_TILE][MAX_HS + 1];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int first_row = blockIdx.x * ATT_WARPS;
    int row = first_row + warp;  // this warp's query position (may be >= T: then it only helps load)
    for (int i = threadIdx.x; i < ATT_WARPS * hs; i += blockDim.x) {
        int r = first_row + i / hs;
        q_s[i / hs][i % hs] = r < T ? to_float(inp[qkv_offset(b, r, 0, h, T, C, hs) + i % hs]) : 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    float o[ATT_PER_LANE];  // channels lane, lane + 32, ... of the output
    for (int k = 0; k < ATT_PER_LANE; k++) o[k] = 0.0f;
    // the keys this block's last row sees: 0 ..= imin(T - 1, first_row + ATTENTION_WARPS - 1)
    int last_key = imin(T - 1, first_row + ATT_WARPS - 1);
    for (int first_key = 0; first_key <= last_key; first_key += ATT_TILE) {
        __syncthreads();  // everyone is done with the previous tile
        load_qkv_tile(k_s, inp, b, first_key, 1, h, T, C, hs);
        load_qkv_tile(v_s, inp, b, first_key, 2, h, T, C, hs);
        __syncthreads();
        // lane j: the score of key first_key + j, or -inf where it is masked (future or past T)
        int key = first_key + lane;
        bool valid = row < T && key <= row;
        float s = 0.0f;
        for (int i = 0; i < hs; i++) s += q_s[warp][i] * k_s[lane][i];
        s = valid ? s * scale : NEG_INF;
        // the online softmax: a new maximum rescales what was summed so far
        float m_new = fmaxf(m, warp_max(s));
        float correction = m_new == NEG_INF ? 1.0f : expf(m - m_new);  // expf(-inf) = 0 the first time
        float p = valid ? expf(s - m_new) : 0.0f;
        l = l * correction + warp_sum(p);
        for (int k = 0; k < ATT_PER_LANE; k++) o[k] *= correction;
        // o += sum over the tile's keys j of p_j v_j: lane j broadcasts its p_j
        for (int j = 0; j < ATT_TILE; j++) {
            float pj = __shfl_sync(0xffffffff, p, j);
            for (int k = 0; k < ATT_PER_LANE; k++) {
                int ch = lane + 32 * k;
                if (ch < hs) o[k] += pj * v_s[j][ch];
            }
        }
        m = m_new;
    }
    if (row < T) {
        floatX* out_h = out + ((size_t)b * T + row) * C + (size_t)h * hs;
        for (int k = 0; k < ATT_PER_LANE; k++) {
            int ch = lane + 32 * k;
            if (ch < hs) store(&out_h[ch], o[k] / l);
        }
        if (lane == 0) lse[(size_t)bh * T + row] = m + logf(l);
    }
}

// Backward, pass 1 of 3: delta (B, NH, T) = dout . out over each head's channels (the softmax
// backward's row sum). One warp per row (b, h, t), its lanes over the channels.
template <typename floatX>
__device__ void attention_backward_delta_t(float* delta, const floatX* dout, const floatX* out, int B, int T, int C,
                                           int NH) {
    size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (idx >= (size_t)B * NH * T) return;  // whole warps leave together
    int t = idx % T, h = (idx / T) % NH, b = idx / T / NH;
    int hs = C / NH;
    size_t at = ((size_t)b * T + t) * C + (size_t)h * hs;
    float sum = 0.0f;
    for (int ch = lane; ch < hs; ch += 32) sum += to_float(dout[at + ch]) * to_float(out[at + ch]);
    sum = warp_sum(sum);
    if (lane == 0) delta[idx] = sum;
}

// Backward, pass 2 of 3: the keys and values. Accumulates (+=) into the k and v parts of dinp (B, T, 3C):
//   dv_t2 += sum over t1 >= t2 of p dout_t1,  dk_t2 += scale * sum over t1 >= t2 of ds q_t1,
// with p = exp(q_t1 . k_t2 scale - lse_t1) and ds = p (dout_t1 . v_t2 - delta_t1).
// Grid (ceil(T / ATTENTION_WARPS), B * NH), one key a warp; the block walks the tiles of 32 queries
// from the one holding its first key to the end: lane i takes query i of the tile for the scores,
// then channels for the sums.
template <typename floatX>
__device__ void attention_backward_dkv_t(floatX* dinp, const float* delta, const floatX* dout, const floatX* inp,
                                         const float* lse, int B, int T, int C, int NH) {
    __shared__ float k_s[ATT_WARPS][MAX_HS];  // this block's keys and values
    __shared__ float v_s[ATT_WARPS][MAX_HS];
    __shared__ float q_s[ATT_TILE][MAX_HS + 1];
    __shared__ float dout_s[ATT_TILE][MAX_HS + 1];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int first_key = blockIdx.x * ATT_WARPS;
    int key = first_key + warp;
    for (int i = threadIdx.x; i < ATT_WARPS * hs; i += blockDim.x) {
        int t = first_key + i / hs;
        k_s[i / hs][i % hs] = t < T ? to_float(inp[qkv_offset(b, t, 1, h, T, C, hs) + i % hs]) : 0.0f;
        v_s[i / hs][i % hs] = t < T ? to_float(inp[qkv_offset(b, t, 2, h, T, C, hs) + i % hs]) : 0.0f;
    }
    float dk[ATT_PER_LANE], dv[ATT_PER_LANE];
    for (int k = 0; k < ATT_PER_LANE; k++) dk[k] = dv[k] = 0.0f;
    for (int first_query = first_key / ATT_TILE * ATT_TILE; first_query < T; first_query += ATT_TILE) {
        __syncthreads();
        load_qkv_tile(q_s, inp, b, first_query, 0, h, T, C, hs);
        load_btc_tile(dout_s, dout, b, first_query, h, T, C, hs);
        __syncthreads();
        // lane i: query first_query + i against this warp's key
        int query = first_query + lane;
        bool valid = key < T && query < T && key <= query;
        float s = 0.0f, dp = 0.0f;
        for (int i = 0; i < hs; i++) {
            s += q_s[lane][i] * k_s[warp][i];
            dp += dout_s[lane][i] * v_s[warp][i];
        }
        size_t row = (size_t)bh * T + (valid ? query : 0);
        float p = valid ? expf(s * scale - lse[row]) : 0.0f;
        float ds = valid ? p * (dp - delta[row]) : 0.0f;
        // dv += sum over the tile's queries i of p_i dout_i, dk += ds_i q_i: lane i broadcasts its pair
        for (int i = 0; i < ATT_TILE; i++) {
            float pi = __shfl_sync(0xffffffff, p, i);
            float dsi = __shfl_sync(0xffffffff, ds, i);
            for (int k = 0; k < ATT_PER_LANE; k++) {
                int ch = lane + 32 * k;
                if (ch < hs) {
                    dv[k] += pi * dout_s[i][ch];
                    dk[k] += dsi * q_s[i][ch];
                }
            }
        }
    }
    if (key < T) {
        floatX* dk_g = dinp + qkv_offset(b, key, 1, h, T, C, hs);
        floatX* dv_g = dinp + qkv_offset(b, key, 2, h, T, C, hs);
        for (int k = 0; k < ATT_PER_LANE; k++) {
            int ch = lane + 32 * k;
            if (ch < hs) {
                store(&dk_g[ch], to_float(dk_g[ch]) + dk[k] * scale);
                store(&dv_g[ch], to_float(dv_g[ch]) + dv[k]);
            }
        }
    }
}

// Backward, pass 3 of 3: the queries. Accumulates (+=) into the q part of dinp (B, T, 3C):
//   dq_t1 += scale * sum over t2 <= t1 of ds k_t2, with ds as in pass 2.
// Grid (ceil(T / ATTENTION_WARPS), B * NH), one query a warp, walking the key tiles it sees as the
// forward does.
template <typename floatX>
__device__ void attention_backward_dq_t(floatX* dinp, const float* delta, const floatX* dout, const floatX* inp,
                                        const float* lse, int B, int T, int C, int NH) {
    __shared__ float q_s[ATT_WARPS][MAX_HS];  // this block's queries and their output gradients
    __shared__ float dout_s[ATT_WARPS][MAX_HS];
    __shared__ float k_s[ATT_TILE][MAX_HS + 1];
    __shared__ float v_s[ATT_TILE][MAX_HS + 1];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int first_row = blockIdx.x * ATT_WARPS;
    int row = first_row + warp;
    for (int i = threadIdx.x; i < ATT_WARPS * hs; i += blockDim.x) {
        int r = first_row + i / hs;
        q_s[i / hs][i % hs] = r < T ? to_float(inp[qkv_offset(b, r, 0, h, T, C, hs) + i % hs]) : 0.0f;
        dout_s[i / hs][i % hs] = r < T ? to_float(dout[((size_t)b * T + r) * C + (size_t)h * hs + i % hs]) : 0.0f;
    }
    float row_lse = row < T ? lse[(size_t)bh * T + row] : 0.0f;
    float row_delta = row < T ? delta[(size_t)bh * T + row] : 0.0f;
    float dq[ATT_PER_LANE];
    for (int k = 0; k < ATT_PER_LANE; k++) dq[k] = 0.0f;
    int last_key = imin(T - 1, first_row + ATT_WARPS - 1);
    for (int first_key = 0; first_key <= last_key; first_key += ATT_TILE) {
        __syncthreads();
        load_qkv_tile(k_s, inp, b, first_key, 1, h, T, C, hs);
        load_qkv_tile(v_s, inp, b, first_key, 2, h, T, C, hs);
        __syncthreads();
        int key = first_key + lane;
        bool valid = row < T && key <= row;
        float s = 0.0f, dp = 0.0f;
        for (int i = 0; i < hs; i++) {
            s += q_s[warp][i] * k_s[lane][i];
            dp += dout_s[warp][i] * v_s[lane][i];
        }
        float p = valid ? expf(s * scale - row_lse) : 0.0f;
        float ds = p * (dp - row_delta);
        for (int j = 0; j < ATT_TILE; j++) {
            float dsj = __shfl_sync(0xffffffff, ds, j);
            for (int k = 0; k < ATT_PER_LANE; k++) {
                int ch = lane + 32 * k;
                if (ch < hs) dq[k] += dsj * k_s[j][ch];
            }
        }
    }
    if (row < T) {
        floatX* dq_g = dinp + qkv_offset(b, row, 0, h, T, C, hs);
        for (int k = 0; k < ATT_PER_LANE; k++) {
            int ch = lane + 32 * k;
            if (ch < hs) store(&dq_g[ch], to_float(dq_g[ch]) + dq[k] * scale);
        }
    }
}

// ----------------------------------------------------------------------------------------------
// the kernels, by name: fp32, then bf16

extern "C" __global__ void attention_forward(float* out, float* lse, const float* inp, int B, int T, int C, int NH) {
    attention_forward_t(out, lse, inp, B, T, C, NH);
}
extern "C" __global__ void attention_backward_delta(float* delta, const float* dout, const float* out, int B, int T,
                                                    int C, int NH) {
    attention_backward_delta_t(delta, dout, out, B, T, C, NH);
}
extern "C" __global__ void attention_backward_dkv(float* dinp, const float* delta, const float* dout, const float* inp,
                                                  const float* lse, int B, int T, int C, int NH) {
    attention_backward_dkv_t(dinp, delta, dout, inp, lse, B, T, C, NH);
}
extern "C" __global__ void attention_backward_dq(float* dinp, const float* delta, const float* dout, const float* inp,
                                                 const float* lse, int B, int T, int C, int NH) {
    attention_backward_dq_t(dinp, delta, dout, inp, lse, B, T, C, NH);
}
extern "C" __global__ void attention_forward_bf16(bf16* out, float* lse, const bf16* inp, int B, int T, int C, int NH) {
    attention_forward_t(out, lse, inp, B, T, C, NH);
}
extern "C" __global__ void attention_backward_delta_bf16(float* delta, const bf16* dout, const bf16* out, int B, int T,
                                                         int C, int NH) {
    attention_backward_delta_t(delta, dout, out, B, T, C, NH);
}
extern "C" __global__ void attention_backward_dkv_bf16(bf16* dinp, const float* delta, const bf16* dout,
                                                       const bf16* inp, const float* lse, int B, int T, int C, int NH) {
    attention_backward_dkv_t(dinp, delta, dout, inp, lse, B, T, C, NH);
}
extern "C" __global__ void attention_backward_dq_bf16(bf16* dinp, const float* delta, const bf16* dout,
                                                      const bf16* inp, const float* lse, int B, int T, int C, int NH) {
    attention_backward_dq_t(dinp, delta, dout, inp, lse, B, T, C, NH);
}
