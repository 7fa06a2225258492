// Causal multi-head self-attention (https://arxiv.org/abs/1706.03762), GPT-2 style.
// Twin: src/cpu/attention.rs.
//
// The input is the qkv projection (B, T, 3C): for each position, its query, key and value vectors
// side by side, each of C channels split into NH heads of hs = C/NH channels. For each head,
// position t attends to positions 0..=t (causal): its weights are softmax(q_t . k_t2 / sqrt(hs)),
// and its output is the weighted sum of the values. preatt and att (B, NH, T, T) keep the scores
// before and after the softmax for the backward pass; entries above the diagonal are 0.
//
// These are the simple kernels: one thread per row of the (T, T) attention matrix, doing what the
// CPU loop body does. Every thread writes only its own rows, so no atomics are needed and the
// results do not depend on scheduling. Neighbouring threads of a warp handle neighbouring positions
// of the same head, so when they loop over the other positions together they read the same key or
// value vector (one broadcast load for the warp); each thread keeps its own vector (query, output
// accumulator, ...) in a local array of MAX_HS floats, which needs hs = C/NH <= MAX_HS (64 in
// every GPT-2 size; src/cuda/kernels/attention.rs checks, with ATTENTION_MAX_HS = MAX_HS).

#define MAX_HS 128

// The offset of the query (part 0), key (1) or value (2) vector of head h at position (b, t) in inp (B, T, 3C).
__device__ __forceinline__ size_t qkv_offset(int b, int t, int part, int h, int T, int C, int hs) {
    return ((size_t)b * T + t) * 3 * C + (size_t)part * C + (size_t)h * hs;
}

// out (B, T, C), preatt (B, NH, T, T), att (B, NH, T, T) from inp (B, T, 3C).
// One thread per (b, h, t1), t1 the fastest-moving index.
extern "C" __global__ void attention_forward(float* out, float* preatt, float* att, const float* inp, int B, int T,
                                             int C, int NH) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T) return;
    int t1 = idx % T;
    int h = (idx / T) % NH;
    int b = idx / T / NH;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float* preatt_row = preatt + idx * T;  // row t1 of the (b, h) matrix
    float* att_row = att + idx * T;
    float q[MAX_HS];  // this position's query
    const float* q_global = inp + qkv_offset(b, t1, 0, h, T, C, hs);
    for (int i = 0; i < hs; i++) q[i] = q_global[i];

    // pass 1: scores q.k / sqrt(hs) and their maximum
    float maxval = __int_as_float(0xff800000);  // -infinity
    for (int t2 = 0; t2 <= t1; t2++) {
        const float* k = inp + qkv_offset(b, t2, 1, h, T, C, hs);
        float dot = 0.0f;
        for (int i = 0; i < hs; i++) dot += q[i] * k[i];
        float score = dot * scale;
        preatt_row[t2] = score;
        maxval = fmaxf(maxval, score);
    }
    // pass 2: exponentiate (minus the max, for stability) and sum
    float expsum = 0.0f;
    for (int t2 = 0; t2 <= t1; t2++) {
        float e = expf(preatt_row[t2] - maxval);
        att_row[t2] = e;
        expsum += e;
    }
    // pass 3: normalize to get the softmax; the future stays 0 (causal mask)
    for (int t2 = 0; t2 < T; t2++) {
        if (t2 <= t1) {
            att_row[t2] = att_row[t2] / expsum;
        } else {
            att_row[t2] = 0.0f;
            preatt_row[t2] = 0.0f;
        }
    }
    // pass 4: out = att @ v for this head's hs channels of position t1
    float acc[MAX_HS];
    for (int i = 0; i < hs; i++) acc[i] = 0.0f;
    for (int t2 = 0; t2 <= t1; t2++) {
        const float* v = inp + qkv_offset(b, t2, 2, h, T, C, hs);
        float a = att_row[t2];
        for (int i = 0; i < hs; i++) acc[i] += a * v[i];
    }
    float* out_h = out + ((size_t)b * T + t1) * C + (size_t)h * hs;
    for (int i = 0; i < hs; i++) out_h[i] = acc[i];
}

// Backward of attention_forward, step 1 of 3 (the CPU does all three in one loop; on the GPU each
// step gets the thread layout that lets every thread write only its own numbers).
// For each row (b, h, t1), one thread:
//   backward of pass 4 (out = att @ v):   datt[t1, t2] = dout_t1 . v_t2
//   backward of the softmax:              dpreatt = att * (datt - sum(att * datt))
// dpreatt and datt (B, NH, T, T) are scratch space, overwritten on and below the diagonal.
extern "C" __global__ void attention_backward_datt(float* dpreatt, float* datt, const float* dout, const float* inp,
                                                   const float* att, int B, int T, int C, int NH) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T) return;
    int t1 = idx % T;
    int h = (idx / T) % NH;
    int b = idx / T / NH;
    int hs = C / NH;
    const float* att_row = att + idx * T;
    float* datt_row = datt + idx * T;
    float* dpreatt_row = dpreatt + idx * T;
    float dout_h[MAX_HS];  // this position's output gradient, head h
    const float* dout_global = dout + ((size_t)b * T + t1) * C + (size_t)h * hs;
    for (int i = 0; i < hs; i++) dout_h[i] = dout_global[i];
    for (int t2 = 0; t2 <= t1; t2++) {
        const float* v = inp + qkv_offset(b, t2, 2, h, T, C, hs);
        float d = 0.0f;
        for (int i = 0; i < hs; i++) d += v[i] * dout_h[i];
        datt_row[t2] = d;
    }
    float dot = 0.0f;
    for (int t2 = 0; t2 <= t1; t2++) dot += att_row[t2] * datt_row[t2];
    for (int t2 = 0; t2 <= t1; t2++) dpreatt_row[t2] = att_row[t2] * (datt_row[t2] - dot);
}

// Step 2 of 3: backward of the scores q.k * scale for the queries. One thread per (b, h, t1):
//   dq_t1 += scale * sum over t2 <= t1 of dpreatt[t1, t2] k_t2.        Accumulates (+=) into dinp (B, T, 3C).
extern "C" __global__ void attention_backward_dq(float* dinp, const float* dpreatt, const float* inp, int B, int T,
                                                 int C, int NH) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T) return;
    int t1 = idx % T;
    int h = (idx / T) % NH;
    int b = idx / T / NH;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float* dpreatt_row = dpreatt + idx * T;
    float acc[MAX_HS];
    for (int i = 0; i < hs; i++) acc[i] = 0.0f;
    for (int t2 = 0; t2 <= t1; t2++) {
        const float* k = inp + qkv_offset(b, t2, 1, h, T, C, hs);
        float d = dpreatt_row[t2];
        for (int i = 0; i < hs; i++) acc[i] += d * k[i];
    }
    float* dq = dinp + qkv_offset(b, t1, 0, h, T, C, hs);
    for (int i = 0; i < hs; i++) dq[i] += acc[i] * scale;
}

// Step 3 of 3: the keys and values. One thread per (b, h, t2), summing over the rows t1 >= t2 that attend to t2:
//   dk_t2 += scale * sum over t1 >= t2 of dpreatt[t1, t2] q_t1
//   dv_t2 += sum over t1 >= t2 of att[t1, t2] dout_t1
// Accumulates (+=) into dinp (B, T, 3C). The threads of a warp walk t1 together, from the last row
// down, each joining in once t1 reaches its own t2, so they read the same q_t1 and dout_t1.
extern "C" __global__ void attention_backward_dkv(float* dinp, const float* dpreatt, const float* dout,
                                                  const float* inp, const float* att, int B, int T, int C, int NH) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T) return;
    int t2 = idx % T;
    int h = (idx / T) % NH;
    int b = idx / T / NH;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    size_t bh_rows = (idx / T) * T;  // the first row of the (b, h) matrix
    float dk_acc[MAX_HS];
    float dv_acc[MAX_HS];
    for (int i = 0; i < hs; i++) {
        dk_acc[i] = 0.0f;
        dv_acc[i] = 0.0f;
    }
    for (int t1 = T - 1; t1 >= t2; t1--) {
        size_t at = (bh_rows + t1) * T + t2;
        float dp = dpreatt[at];
        float a = att[at];
        const float* q = inp + qkv_offset(b, t1, 0, h, T, C, hs);
        const float* dout_h = dout + ((size_t)b * T + t1) * C + (size_t)h * hs;
        for (int i = 0; i < hs; i++) {
            dk_acc[i] += dp * q[i];
            dv_acc[i] += a * dout_h[i];
        }
    }
    float* dk = dinp + qkv_offset(b, t2, 1, h, T, C, hs);
    float* dv = dinp + qkv_offset(b, t2, 2, h, T, C, hs);
    for (int i = 0; i < hs; i++) {
        dk[i] += dk_acc[i] * scale;
        dv[i] += dv_acc[i];
    }
}
