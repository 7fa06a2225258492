// Matrix multiply with bias: the linear layer, out = inp @ weight^T + bias.
// Twin: src/cpu/matmul.rs.
//
// Weights are stored (out, in), like torch's nn.Linear, so each output is a dot product of an input
// row with a weight row. Nearly all of GPT-2's FLOPs are here. Three versions of each kernel, as in
// llm.c's dev/cuda, each one idea more than the last:
//   version 1 is the naive port (one thread per output number, reading everything from global memory);
//   version 2 tiles the output into 128x128 blocks that 256 threads compute together, staging
//     8-wide slices of the inputs in shared memory and keeping an 8x8 block of outputs per thread in
//     registers, so each number loaded is used 8 (registers) x 16 (threads) times;
//   version 3 is version 2 with 128-bit loads (4 numbers an instruction, where the sizes and
//     addresses allow), two shared-memory buffers so that the next slice loads while this one is
//     multiplied, and split-K for the weight gradient, whose small output would leave most SMs idle.
// All three are tested against the CPU in dev/cuda_emu. src/cuda/kernels/matmul.rs launches version 3
// (--matmul handwritten, the default) or version 1 (--matmul naive), and tests/cuda.rs checks those
// two on a GPU; version 2 stays here as the step between them (or cuBLAS: --matmul cublas).
//
// Each kernel is a template over the storage type floatX of its inputs, weights and activation
// outputs (float, or bf16 as kernels/bf16.cuh and src/precision.rs define it), named twice: e.g.
// `matmul_forward3` (fp32) and `matmul_forward3_bf16`. The products are summed in fp32 either way
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

// ----------------------------------------------------------------------------------------------
// version 3: version 2 with wide loads, double buffering, and split-K for the weight gradient
//
// Three changes to version 2, each for one thing version 2 leaves on the table:
//   1. Wide loads. A thread reads 4 consecutive numbers with one instruction (a 128-bit float4 for
//      fp32, 64 bits of four bf16 words for bf16), from global memory into registers and from shared
//      memory into registers: fewer load instructions for the same bytes. For the shared-memory side
//      a thread's 8 rows (and 8 columns) become two runs of 4 consecutive ones, 64 apart, instead
//      of 8 rows 16 apart. A wide load needs its address aligned to its size; sizes like C = 77 or an
//      odd row stride break that, so each kernel checks once whether its matrices allow it and
//      otherwise reads number by number, as version 2 does (and so do the edges of the matrices).
//   2. Double buffering. Two shared-memory slices: while the threads multiply out slice k from one,
//      the loads of slice k+1 from global memory are already in flight (into registers, then stored
//      into the other buffer), so the wait for global memory overlaps the arithmetic. One
//      __syncthreads per slice is then enough (version 2 needs two): see matmul_tiled3.
//   3. Split-K for dweight (OC, C) += dout^T (OC, BT) @ inp (BT, C). Its output is small (GPT-2
//      small: 36 to 144 tiles of 128 x 128) and its sum long (K = B*T, up to 65536), so one block per
//      tile leaves most of a 132-SM GPU idle. Split K into S slices (grid z): block z sums its slice
//      into its own fp32 partial result in a scratch buffer, then matmul_splitk_reduce adds the S
//      partials into dweight, in the order z = 0, 1, ..., S-1. No atomics: the same inputs give the
//      same bits on every run. src/cuda/kernels/matmul.rs (matmul_splitk_slices) picks S from the
//      number of SMs.

// The staging of a slice: each thread loads 4 numbers of the BK x BM slice of A and 4 of B.
static_assert(BK * BM == 4 * MATMUL_THREADS && BK * BN == 4 * MATMUL_THREADS, "a slice is 4 numbers a thread");
// The register block: two runs of 4 rows (columns) per thread, half a tile apart.
static_assert(TM == 8 && TN == 8 && BM / 2 == (BM / TM) * 4 && BN / 2 == (BN / TN) * 4, "two runs of 4 a thread");
// Rows of shared memory must start 16-byte aligned for the float4 reads and writes.
static_assert((BM + PAD) % 4 == 0 && (BN + PAD) % 4 == 0, "shared rows 16-byte aligned");

// Four consecutive stored numbers with one load, widened to fp32: one float4 (128 bits) for fp32,
// four bf16 words in a uint2 (64 bits; the first number is the low half of .x) for bf16. p must be
// aligned to the load's size (aligned4 says whether a matrix's base address is).
__device__ __forceinline__ void load4(float v[4], const float* p) {
    float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
}
__device__ __forceinline__ void load4(float v[4], const bf16* p) {
    uint2 q = *reinterpret_cast<const uint2*>(p);
    bf16 w[4] = {{(unsigned short)(q.x & 0xffffu)}, {(unsigned short)(q.x >> 16)},
                 {(unsigned short)(q.y & 0xffffu)}, {(unsigned short)(q.y >> 16)}};
    for (int i = 0; i < 4; i++) v[i] = to_float(w[i]);
}
// ... and the other way: four numbers written with one store, each rounded once for bf16.
__device__ __forceinline__ void store4(float* p, const float v[4]) {
    float4 q;
    q.x = v[0];
    q.y = v[1];
    q.z = v[2];
    q.w = v[3];
    *reinterpret_cast<float4*>(p) = q;
}
__device__ __forceinline__ void store4(bf16* p, const float v[4]) {
    uint2 q;
    q.x = (unsigned int)round_bf16(v[0]).bits | ((unsigned int)round_bf16(v[1]).bits << 16);
    q.y = (unsigned int)round_bf16(v[2]).bits | ((unsigned int)round_bf16(v[3]).bits << 16);
    *reinterpret_cast<uint2*>(p) = q;
}
// Whether p is aligned for load4/store4 of its type: 16 bytes for fp32, 8 for bf16.
template <typename T>
__device__ __forceinline__ bool aligned4(const T* p) {
    return (size_t)p % (4 * sizeof(T)) == 0;
}

// This thread's 4 numbers of the BK x BM slice of X starting at (m0, k0), X(m, k) = X[m * sm + k * sk],
// into v; numbers outside rows 0..M or depths k0..kend read as 0. Which 4 depends on which index of
// X is contiguous, so that they are 4 consecutive addresses either way:
//   sm == 1 (dweight's A and B):        4 consecutive m of one k, slice element (k, m..m+3);
//   sk == 1 (forward's A and B, dinp's A): 4 consecutive k of one m, slice element (k..k+3, m).
// `wide`: X's base is aligned and its other stride a multiple of 4 (so, as m0 and k0 are multiples of 4,
// every group of 4 is aligned): then a group wholly inside the matrix is one load4.
template <typename floatX>
__device__ __forceinline__ void load_slice3(float v[4], const floatX* X, size_t sm, size_t sk, int m0, int k0, int M,
                                            int kend, bool wide) {
    if (sm == 1) {
        int m = m0 + threadIdx.x % (BM / 4) * 4;
        int k = k0 + threadIdx.x / (BM / 4);
        const floatX* p = X + (size_t)k * sk + m;
        if (wide && k < kend && m + 3 < M) {
            load4(v, p);
        } else {
            for (int i = 0; i < 4; i++) v[i] = (k < kend && m + i < M) ? to_float(p[i]) : 0.0f;
        }
    } else {
        int m = m0 + threadIdx.x / (BK / 4);
        int k = k0 + threadIdx.x % (BK / 4) * 4;
        const floatX* p = X + (size_t)m * sm + k;
        if (wide && m < M && k + 3 < kend) {
            load4(v, p);
        } else {
            for (int i = 0; i < 4; i++) v[i] = (m < M && k + i < kend) ? to_float(p[i]) : 0.0f;
        }
    }
}

// ... and the same 4 numbers into the slice S[k][m] (row stride BM + PAD) in shared memory: 4
// consecutive m are one float4 store; 4 consecutive k go to 4 rows (a transpose: the PAD of 4 puts
// row k + 4 16 banks away from row k, so the two rows a warp writes do not collide).
__device__ __forceinline__ void store_slice3(float* S, const float v[4], size_t sm) {
    if (sm == 1) {
        int m = threadIdx.x % (BM / 4) * 4;
        int k = threadIdx.x / (BM / 4);
        store4(&S[k * (BM + PAD) + m], v);
    } else {
        int m = threadIdx.x / (BK / 4);
        int k = threadIdx.x % (BK / 4) * 4;
        for (int i = 0; i < 4; i++) S[(k + i) * (BM + PAD) + m] = v[i];
    }
}

// The depths k of slice blockIdx.z of gridDim.z: K cut into gridDim.z runs of equal length, rounded
// up to a multiple of BK (so a slice starts on a BK step, and a wide load's k is a multiple of 4);
// the last run is what is left (it may be shorter, or, for tiny K, empty: its partial result is 0).
// With one slice (grid z = 1) it is all of K.
__device__ __forceinline__ void k_slice(int K, int* kbeg, int* kend) {
    int per = ((K + (int)gridDim.z - 1) / (int)gridDim.z + BK - 1) / BK * BK;
    *kbeg = (int)blockIdx.z * per;
    *kend = *kbeg + per < K ? *kbeg + per : K;
}

// version 2's matmul_tiled, out (M, N) (row stride ldo) = [out +] sum over k of A(m, k) B(n, k)
// [+ bias (N)], for the depths k of this block's slice (k_slice). Thread (ty, tx) of the 16 x 16
// threads computes rows ty * 4 + {0..3} and 64 + ty * 4 + {0..3}, and columns likewise with tx: so its
// 8 numbers of A (and of B) for one k are two float4 reads of shared memory. (Why not 8 consecutive
// rows: then the 16 tx of a warp would read 32 bytes apart and two at a time hit the same banks; with
// runs of 4 they read 64 consecutive floats, which a float4 read serves without conflicts.)
template <typename floatO, typename floatX>
__device__ __forceinline__ void matmul_tiled3(floatO* out, size_t ldo, const floatX* A, size_t sam, size_t sak,
                                              const floatX* B, size_t sbn, size_t sbk, const floatX* bias, int M,
                                              int N, int K, bool accumulate) {
    // two buffers of each slice; float4 so that they are 16-byte aligned
    __shared__ float4 As4[2][BK * (BM + PAD) / 4];
    __shared__ float4 Bs4[2][BK * (BN + PAD) / 4];
    int tx = threadIdx.x % (BN / TN);
    int ty = threadIdx.x / (BN / TN);
    int m0 = blockIdx.y * BM;
    int n0 = blockIdx.x * BN;
    int kbeg, kend;
    k_slice(K, &kbeg, &kend);
    // wide loads: the base aligned and the stride that is not 1 a multiple of 4 (see load_slice3)
    bool wide_a = aligned4(A) && (sam == 1 ? sak : sam) % 4 == 0;
    bool wide_b = aligned4(B) && (sbn == 1 ? sbk : sbn) % 4 == 0;

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; i++) {
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;
    }

    // the first slice into buffer 0
    float a_next[4], b_next[4];
    load_slice3(a_next, A, sam, sak, m0, kbeg, M, kend, wide_a);
    load_slice3(b_next, B, sbn, sbk, n0, kbeg, N, kend, wide_b);
    store_slice3((float*)As4[0], a_next, sam);
    store_slice3((float*)Bs4[0], b_next, sbn);
    __syncthreads();

    int buf = 0;
    for (int k0 = kbeg; k0 < kend; k0 += BK) {
        bool more = k0 + BK < kend;
        // start loading the next slice from global memory; the arithmetic below does not wait for it
        if (more) {
            load_slice3(a_next, A, sam, sak, m0, k0 + BK, M, kend, wide_a);
            load_slice3(b_next, B, sbn, sbk, n0, k0 + BK, N, kend, wide_b);
        }
        // multiply out this slice: per k, 8 numbers of A and 8 of B, each two float4 reads of shared memory
        const float* As = (const float*)As4[buf];
        const float* Bs = (const float*)Bs4[buf];
#pragma unroll
        for (int k = 0; k < BK; k++) {
            float a[TM];
            float b[TN];
            const float4 a0 = *reinterpret_cast<const float4*>(&As[k * (BM + PAD) + ty * 4]);
            const float4 a1 = *reinterpret_cast<const float4*>(&As[k * (BM + PAD) + BM / 2 + ty * 4]);
            const float4 b0 = *reinterpret_cast<const float4*>(&Bs[k * (BN + PAD) + tx * 4]);
            const float4 b1 = *reinterpret_cast<const float4*>(&Bs[k * (BN + PAD) + BN / 2 + tx * 4]);
            a[0] = a0.x, a[1] = a0.y, a[2] = a0.z, a[3] = a0.w, a[4] = a1.x, a[5] = a1.y, a[6] = a1.z, a[7] = a1.w;
            b[0] = b0.x, b[1] = b0.y, b[2] = b0.z, b[3] = b0.w, b[4] = b1.x, b[5] = b1.y, b[6] = b1.z, b[7] = b1.w;
#pragma unroll
            for (int i = 0; i < TM; i++) {
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
            }
        }
        // the next slice goes into the other buffer: nobody reads that one now (everyone finished
        // with it before the barrier that ended the previous step) ...
        if (more) {
            store_slice3((float*)As4[buf ^ 1], a_next, sam);
            store_slice3((float*)Bs4[buf ^ 1], b_next, sbn);
        }
        // ... and this one barrier makes it visible before anyone reads it, in the next step
        __syncthreads();
        buf ^= 1;
    }

    // write the 8 x 8 results: runs of 4 columns with one wide store where they are inside the
    // matrix and aligned, number by number (skipping those outside) where not
    bool wide_out = aligned4(out) && ldo % 4 == 0;
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int m = m0 + (i / 4) * (BM / 2) + ty * 4 + i % 4;
        if (m >= M) continue;
#pragma unroll
        for (int jr = 0; jr < 2; jr++) {
            int n = n0 + jr * (BN / 2) + tx * 4;
            floatO* o = out + (size_t)m * ldo + n;
            float v[4];
            for (int j = 0; j < 4; j++) v[j] = acc[i][jr * 4 + j] + (bias != nullptr && n + j < N ? to_float(bias[n + j]) : 0.0f);
            if (wide_out && n + 3 < N) {
                if (accumulate) {
                    float old[4];
                    load4(old, o);
                    for (int j = 0; j < 4; j++) v[j] += old[j];
                }
                store4(o, v);
            } else {
                for (int j = 0; j < 4; j++) {
                    if (n + j < N) store(&o[j], accumulate ? to_float(o[j]) + v[j] : v[j]);
                }
            }
        }
    }
}

// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC); bias may be null.
// Grid (ceil(OC / 128), ceil(BT / 128)), 256 threads. M = BT, N = OC, K = C, as in version 2.
template <typename floatX>
__device__ void matmul_forward3_t(floatX* out, const floatX* inp, const floatX* weight, const floatX* bias, int BT,
                                  int C, int OC) {
    matmul_tiled3(out, OC, inp, C, 1, weight, C, 1, bias, BT, OC, C, false);
}

// dinp (BT, C) += dout (BT, OC) @ weight (OC, C). Grid (ceil(C / 128), ceil(BT / 128)).
template <typename floatX>
__device__ void matmul_backward_dinp3_t(floatX* dinp, const floatX* dout, const floatX* weight, int BT, int C, int OC) {
    matmul_tiled3(dinp, C, dout, OC, 1, weight, 1, C, (const floatX*)nullptr, BT, C, OC, true);
}

// dweight (OC, C) += dout (BT, OC)^T @ inp (BT, C), split-K. Grid (ceil(C / 128), ceil(OC / 128), S).
// With S = 1, the one slice adds into dweight, as version 2 does. With S > 1, block z writes (not adds)
// the sum over its slice of rows (k_slice) to partials + z * OC * C, and matmul_splitk_reduce then
// adds partials (S, OC, C) into dweight; partials may be null when S = 1.
template <typename floatX>
__device__ void matmul_backward_dweight3_t(float* dweight, float* partials, const floatX* dout, const floatX* inp,
                                           int BT, int C, int OC) {
    if (gridDim.z == 1) {
        matmul_tiled3(dweight, C, dout, 1, OC, inp, 1, C, (const floatX*)nullptr, OC, C, BT, true);
    } else {
        float* partial = partials + (size_t)blockIdx.z * OC * C;
        matmul_tiled3(partial, C, dout, 1, OC, inp, 1, C, (const floatX*)nullptr, OC, C, BT, false);
    }
}

// The second half of split-K: dweight (N) += partials[0] + partials[1] + ... + partials[S - 1]
// (partials (S, N)), summed in that order, so every run gives the same bits. One thread per number.
// fp32 only: the partials and dweight are fp32 in both precisions.
extern "C" __global__ void matmul_splitk_reduce(float* dweight, const float* partials, int S, long long N) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float sum = 0.0f;
    for (int s = 0; s < S; s++) sum += partials[s * N + i];
    dweight[i] += sum;
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
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_forward3(float* out, const float* inp, const float* weight, const float* bias, int BT, int C, int OC) {
    matmul_forward3_t(out, inp, weight, bias, BT, C, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_backward_dinp3(float* dinp, const float* dout, const float* weight, int BT, int C, int OC) {
    matmul_backward_dinp3_t(dinp, dout, weight, BT, C, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS) matmul_backward_dweight3(
    float* dweight, float* partials, const float* dout, const float* inp, int BT, int C, int OC) {
    matmul_backward_dweight3_t(dweight, partials, dout, inp, BT, C, OC);
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
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_forward3_bf16(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int BT, int C, int OC) {
    matmul_forward3_t(out, inp, weight, bias, BT, C, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS)
    matmul_backward_dinp3_bf16(bf16* dinp, const bf16* dout, const bf16* weight, int BT, int C, int OC) {
    matmul_backward_dinp3_t(dinp, dout, weight, BT, C, OC);
}
extern "C" __global__ void __launch_bounds__(MATMUL_THREADS) matmul_backward_dweight3_bf16(
    float* dweight, float* partials, const bf16* dout, const bf16* inp, int BT, int C, int OC) {
    matmul_backward_dweight3_t(dweight, partials, dout, inp, BT, C, OC);
}
