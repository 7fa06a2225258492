// Matrix multiply with bias: the linear layer, out = inp @ weight^T + bias.
// Twin: src/cpu/matmul.rs.
//
// Weights are stored (out, in), like torch's nn.Linear, so each output is a dot product of an input
// row with a weight row. Nearly all of GPT-2's FLOPs are here. Two versions of each kernel, as in
// llm.c's dev/cuda: version 1 is the naive port (one thread per output number, reading everything
// from global memory); version 2 tiles the output into 128x128 blocks that 256 threads compute
// together, staging 8-wide slices of the inputs in shared memory and keeping an 8x8 block of
// outputs per thread in registers, so each number loaded is used 8 (registers) x 16 (threads) times.
// Both are tested against the CPU; src/cuda/kernels/matmul.rs picks version 2 (or cuBLAS, --matmul cublas).
//
// Each kernel is a template over the storage type floatX of its inputs, weights and activation
// outputs (float, or bf16 as kernels/bf16.cuh and src/precision.rs define it), named twice: e.g.
// `matmul_forward2` (fp32) and `matmul_forward2_bf16`. The products are summed in fp32 either way
// (the tiles in shared memory are fp32: each bf16 number is widened once, as it is staged), and an
// output is rounded once, when it is written, bias included. The parameter gradients dweight and dbias
// are fp32 in both precisions.

// ----------------------------------------------------------------------------------------------
// version 1: naive

// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC); bias may be null. One thread per output.
template <typename floatX>
__device__ void matmul_forward1_t(floatX* out, const floatX* inp, const floatX* weight, const floatX* bias, int BT,
                                  int C, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BT * OC) return;
    size_t row = idx / OC;
    int o = idx % OC;
    const floatX* inp_row = inp + row * C;
    const floatX* w_row = weight + (size_t)o * C;
    float val = bias != nullptr ? to_float(bias[o]) : 0.0f;
    for (int i = 0; i < C; i++) val += to_float(inp_row[i]) * to_float(w_row[i]);
    store(&out[idx], val);
}

// dinp (BT, C) += dout (BT, OC) @ weight (OC, C): each input feeds every output through its weight.
template <typename floatX>
__device__ void matmul_backward_dinp1_t(floatX* dinp, const floatX* dout, const floatX* weight, int BT, int C, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BT * C) return;
    size_t row = idx / C;
    int i = idx % C;
    const floatX* dout_row = dout + row * OC;
    float sum = 0.0f;
    for (int o = 0; o < OC; o++) sum += to_float(dout_row[o]) * to_float(weight[(size_t)o * C + i]);
    store(&dinp[idx], to_float(dinp[idx]) + sum);
}

// dweight (OC, C) += dout (BT, OC)^T @ inp (BT, C): each weight sees every row that passed through it.
template <typename floatX>
__device__ void matmul_backward_dweight1_t(float* dweight, const floatX* dout, const floatX* inp, int BT, int C,
                                           int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)OC * C) return;
    int o = idx / C;
    int i = idx % C;
    float sum = 0.0f;
    for (int r = 0; r < BT; r++) sum += to_float(dout[(size_t)r * OC + o]) * to_float(inp[(size_t)r * C + i]);
    dweight[idx] += sum;
}

// dbias (OC) += the sum over rows of dout (BT, OC). One thread per column.
template <typename floatX>
__device__ void matmul_backward_dbias1_t(float* dbias, const floatX* dout, int BT, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    float sum = 0.0f;
    for (int r = 0; r < BT; r++) sum += to_float(dout[(size_t)r * OC + o]);
    dbias[o] += sum;
}

// ----------------------------------------------------------------------------------------------
// version 2: shared-memory tiling + register blocking

// BM, BN and MATMUL_THREADS are launch settings too: MATMUL_TILE and MATMUL_TILED_BLOCK of
// src/cuda/kernels/matmul.rs must say the same (dev/cuda_emu checks that they do).
#define BM 128  // rows of the output tile
#define BN 128  // columns of the output tile
#define BK 8    // depth of the slice of A and B staged in shared memory per step
#define TM 8    // rows each thread computes
#define TN 8    // columns each thread computes
#define PAD 4   // shared-memory row padding, so the transposing stores below do not hit the same bank
#define MATMUL_THREADS 256  // (BM / TM) * (BN / TN)

// Copies the BK x BM tile starting at (m0, k0) of the matrix X, whose element (m, k) is X[m * sm + k * sk],
// into S[k][m] (row stride BM + PAD). Elements outside the M x K matrix read as 0, so sizes need not
// be multiples of the tile. Consecutive threads read consecutive addresses of X whichever of m or k
// is the contiguous index (coalesced loads).
template <typename floatX>
__device__ __forceinline__ void load_tile(float* S, const floatX* X, size_t sm, size_t sk, int m0, int k0, int M,
                                          int K) {
    for (int e = threadIdx.x; e < BK * BM; e += MATMUL_THREADS) {
        int m, k;
        if (sk == 1) {
            k = e % BK;
            m = e / BK;
        } else {
            m = e % BM;
            k = e / BM;
        }
        int gm = m0 + m;
        int gk = k0 + k;
        S[k * (BM + PAD) + m] = (gm < M && gk < K) ? to_float(X[gm * sm + gk * sk]) : 0.0f;
    }
}

// out (M, N) (row stride ldo) = [out +] sum over k of A(m, k) B(n, k) [+ bias (N)], for A(m, k) = A[m * sam + k * sak]
// and B(n, k) = B[n * sbn + k * sbk]: the one tiled kernel behind the three products of the linear layer.
// Block (blockIdx.y, blockIdx.x) computes the output tile at rows blockIdx.y * BM, columns blockIdx.x * BN;
// thread (ty, tx) of the 16 x 16 threads computes rows ty + 16 i and columns tx + 16 j, i, j in 0..8.
// floatO is the type of out (an activation or its gradient: floatX; a weight gradient: float).
template <typename floatO, typename floatX>
__device__ __forceinline__ void matmul_tiled(floatO* out, size_t ldo, const floatX* A, size_t sam, size_t sak,
                                             const floatX* B, size_t sbn, size_t sbk, const floatX* bias, int M,
                                             int N, int K, bool accumulate) {
    __shared__ float As[BK * (BM + PAD)];
    __shared__ float Bs[BK * (BN + PAD)];
    int tx = threadIdx.x % (BN / TN);
    int ty = threadIdx.x / (BN / TN);
    int m0 = blockIdx.y * BM;
    int n0 = blockIdx.x * BN;

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; i++) {
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;
    }

    for (int k0 = 0; k0 < K; k0 += BK) {
        // stage the next BK-deep slices of A and B in shared memory
        load_tile(As, A, sam, sak, m0, k0, M, K);
        load_tile(Bs, B, sbn, sbk, n0, k0, N, K);
        __syncthreads();
        // each thread: an outer product of 8 numbers of A and 8 of B per k, from registers
#pragma unroll
        for (int k = 0; k < BK; k++) {
            float a[TM];
            float b[TN];
#pragma unroll
            for (int i = 0; i < TM; i++) a[i] = As[k * (BM + PAD) + ty + 16 * i];
#pragma unroll
            for (int j = 0; j < TN; j++) b[j] = Bs[k * (BN + PAD) + tx + 16 * j];
#pragma unroll
            for (int i = 0; i < TM; i++) {
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
            }
        }
        __syncthreads();
    }

    // write the 8x8 results, skipping those outside the matrix
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int m = m0 + ty + 16 * i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int n = n0 + tx + 16 * j;
            if (n >= N) continue;
            float val = acc[i][j];
            if (bias != nullptr) val += to_float(bias[n]);
            floatO* o = out + m * ldo + n;
            store(o, accumulate ? to_float(*o) + val : val);
        }
    }
}

// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC); bias may be null.
// Grid (ceil(OC / 128), ceil(BT / 128)), 256 threads. M = BT, N = OC, K = C.
template <typename floatX>
__device__ void matmul_forward2_t(floatX* out, const floatX* inp, const floatX* weight, const floatX* bias, int BT,
                                  int C, int OC) {
    matmul_tiled(out, OC, inp, C, 1, weight, C, 1, bias, BT, OC, C, false);
}

// dinp (BT, C) += dout (BT, OC) @ weight (OC, C). Grid (ceil(C / 128), ceil(BT / 128)).
// M = BT, N = C, K = OC: A(m, k) = dout[m * OC + k], B(n, k) = weight[k * C + n].
template <typename floatX>
__device__ void matmul_backward_dinp2_t(floatX* dinp, const floatX* dout, const floatX* weight, int BT, int C, int OC) {
    matmul_tiled(dinp, C, dout, OC, 1, weight, 1, C, (const floatX*)nullptr, BT, C, OC, true);
}

// dweight (OC, C) += dout (BT, OC)^T @ inp (BT, C). Grid (ceil(C / 128), ceil(OC / 128)).
// M = OC, N = C, K = BT: A(m, k) = dout[k * OC + m], B(n, k) = inp[k * C + n].
template <typename floatX>
__device__ void matmul_backward_dweight2_t(float* dweight, const floatX* dout, const floatX* inp, int BT, int C,
                                           int OC) {
    matmul_tiled(dweight, C, dout, 1, OC, inp, 1, C, (const floatX*)nullptr, OC, C, BT, true);
}

// dbias (OC) += the sum over rows of dout (BT, OC), with more threads than columns: block (32, 8)
// covers 32 columns with 8 threads each, the gridDim.y * 8 threads of a column take every
// (gridDim.y * 8)-th row, a block sums its 8 partial sums in shared memory, then adds them atomically.
template <typename floatX>
__device__ void matmul_backward_dbias2_t(float* dbias, const floatX* dout, int BT, int OC) {
    __shared__ float partial[8][32];
    int o = blockIdx.x * 32 + threadIdx.x;
    float sum = 0.0f;
    if (o < OC) {
        for (int r = blockIdx.y * 8 + threadIdx.y; r < BT; r += gridDim.y * 8) sum += to_float(dout[(size_t)r * OC + o]);
    }
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && o < OC) {
        float s = 0.0f;
        for (int y = 0; y < 8; y++) s += partial[y][threadIdx.x];
        atomicAdd(&dbias[o], s);
    }
}

// out (BT, OC) += bias (OC) on every row: the bias of the cuBLAS forward path, whose GEMM has no bias
// (fp32 only: bf16 runs the hand-written kernels).
extern "C" __global__ void matmul_add_bias(float* out, const float* bias, int BT, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BT * OC) return;
    out[idx] += bias[idx % OC];
}

// ----------------------------------------------------------------------------------------------
// the kernels, by name: fp32, then bf16

extern "C" __global__ void matmul_forward1(float* out, const float* inp, const float* weight, const float* bias,
                                           int BT, int C, int OC) {
    matmul_forward1_t(out, inp, weight, bias, BT, C, OC);
}
extern "C" __global__ void matmul_backward_dinp1(float* dinp, const float* dout, const float* weight, int BT, int C,
                                                 int OC) {
    matmul_backward_dinp1_t(dinp, dout, weight, BT, C, OC);
}
extern "C" __global__ void matmul_backward_dweight1(float* dweight, const float* dout, const float* inp, int BT, int C,
                                                    int OC) {
    matmul_backward_dweight1_t(dweight, dout, inp, BT, C, OC);
}
extern "C" __global__ void matmul_backward_dbias1(float* dbias, const float* dout, int BT, int OC) {
    matmul_backward_dbias1_t(dbias, dout, BT, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_forward2(float* out, const float* inp, const float* weight, const float* bias, int BT, int C, int OC) {
    matmul_forward2_t(out, inp, weight, bias, BT, C, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_backward_dinp2(float* dinp, const float* dout, const float* weight, int BT, int C, int OC) {
    matmul_backward_dinp2_t(dinp, dout, weight, BT, C, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_backward_dweight2(float* dweight, const float* dout, const float* inp, int BT, int C, int OC) {
    matmul_backward_dweight2_t(dweight, dout, inp, BT, C, OC);
}
extern "C" __global__ void matmul_backward_dbias2(float* dbias, const float* dout, int BT, int OC) {
    matmul_backward_dbias2_t(dbias, dout, BT, OC);
}

extern "C" __global__ void matmul_forward1_bf16(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias,
                                                int BT, int C, int OC) {
    matmul_forward1_t(out, inp, weight, bias, BT, C, OC);
}
extern "C" __global__ void matmul_backward_dinp1_bf16(bf16* dinp, const bf16* dout, const bf16* weight, int BT, int C,
                                                      int OC) {
    matmul_backward_dinp1_t(dinp, dout, weight, BT, C, OC);
}
extern "C" __global__ void matmul_backward_dweight1_bf16(float* dweight, const bf16* dout, const bf16* inp, int BT,
                                                         int C, int OC) {
    matmul_backward_dweight1_t(dweight, dout, inp, BT, C, OC);
}
extern "C" __global__ void matmul_backward_dbias1_bf16(float* dbias, const bf16* dout, int BT, int OC) {
    matmul_backward_dbias1_t(dbias, dout, BT, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_forward2_bf16(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int BT, int C, int OC) {
    matmul_forward2_t(out, inp, weight, bias, BT, C, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_backward_dinp2_bf16(bf16* dinp, const bf16* dout, const bf16* weight, int BT, int C, int OC) {
    matmul_backward_dinp2_t(dinp, dout, weight, BT, C, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_backward_dweight2_bf16(float* dweight, const bf16* dout, const bf16* inp, int BT, int C, int OC) {
    matmul_backward_dweight2_t(dweight, dout, inp, BT, C, OC);
}
extern "C" __global__ void matmul_backward_dbias2_bf16(float* dbias, const bf16* dout, int BT, int OC) {
    matmul_backward_dbias2_t(dbias, dout, BT, OC);
}
