// A tiny CUDA emulator: runs __global__ functions on the CPU, one block at a time, each CUDA thread
// a fiber (ucontext) on one OS thread. A fiber runs until it reaches a barrier (__syncthreads, or
// the warp exchange inside __shfl_xor_sync) or returns; then the first fiber in the block's schedule
// that can run does. So each thread runs alone and as far ahead as the barriers let it: a missing
// barrier is not a rare race but a certain wrong result (some thread reads shared memory another
// has not written yet, or has already overwritten). Blocks are scheduled in turn forwards,
// backwards and shuffled (blockIdx % 3), so a read of a slot written by a higher or by a lower thread
// both come out wrong. A barrier some threads never reach (one inside divergent code) is a deadlock,
// reported as such. Everything runs on one OS thread, deterministically; atomics are plain adds.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <ucontext.h>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
// CUDA's vector types, as the kernels use them: 4 floats (128 bits) and 2 words (64 bits) that one
// instruction loads or stores. On a GPU such a load or store at an address that is not a multiple of
// its size is an error (x86 would just do it): so reading one from memory (the copy) and writing one
// to memory (the assignment) check the address first, and a kernel that skips its alignment check
// stops here with the kernel's name.
inline const char* emu_kernel_name = "";
inline void emu_check_aligned(const void* p, unsigned long n) {
    unsigned long a = (unsigned long)p;
    asm volatile("" : "+r"(a));  // the compiler may not assume the type's alignment here: that is what is checked
    if (a % n != 0) {
        fflush(stdout);
        fprintf(stderr, "cuda_emu: %s: a %lu-byte vector load or store at %p, not a multiple of %lu: FAIL\n", emu_kernel_name, n, p, n);
        std::_Exit(3);  // not exit(): this runs on a fiber's stack
    }
}
struct alignas(16) float4 {
    float x, y, z, w;
    float4() = default;
    float4(const float4& o) { emu_check_aligned(&o, 16); x = o.x; y = o.y; z = o.z; w = o.w; }
    float4& operator=(const float4& o) { emu_check_aligned(this, 16); x = o.x; y = o.y; z = o.z; w = o.w; return *this; }
};
struct alignas(8) uint2 {
    unsigned x, y;
    uint2() = default;
    uint2(const uint2& o) { emu_check_aligned(&o, 8); x = o.x; y = o.y; }
    uint2& operator=(const uint2& o) { emu_check_aligned(this, 8); x = o.x; y = o.y; return *this; }
};
inline dim3 threadIdx, blockIdx;  // of the fiber running now
inline dim3 blockDim, gridDim;
inline std::vector<double> emu_slots;  // one per thread: the values exchanged by warp shuffles
inline std::vector<char> emu_dyn_shared_buf;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static

// ------------------------------------------------------------------------------ the fiber scheduler

struct EmuBarrier {
    unsigned expected = 0, arrived = 0, generation = 0;
};
struct EmuFiber {
    ucontext_t ctx;
    dim3 tid;
    unsigned linear = 0;
    EmuBarrier* waiting = nullptr;  // the barrier it waits at, and that barrier's generation then
    unsigned waiting_gen = 0;
    bool done = false;
};
inline ucontext_t emu_main_ctx;
inline std::vector<EmuFiber> emu_fibers;
inline std::vector<std::unique_ptr<char[]>> emu_stacks;
inline const size_t EMU_STACK = 256 * 1024;
inline EmuFiber* emu_current;
inline EmuBarrier emu_block_barrier;
inline std::vector<EmuBarrier> emu_warp_barriers;
inline std::function<void()> emu_body;  // the kernel call, its arguments bound

inline unsigned emu_tid() { return threadIdx.x + threadIdx.y * blockDim.x; }

// Arrive at `b` and give the CPU back to the scheduler until every expected thread has arrived.
inline void emu_wait(EmuBarrier& b) {
    EmuFiber* me = emu_current;
    me->waiting = &b;
    me->waiting_gen = b.generation;
    if (++b.arrived == b.expected) { b.arrived = 0; b.generation++; }
    swapcontext(&me->ctx, &emu_main_ctx);
}
// A thread that returns no longer takes part in its barriers.
inline void emu_drop(EmuBarrier& b) {
    b.expected--;
    if (b.expected > 0 && b.arrived == b.expected) { b.arrived = 0; b.generation++; }
}

inline void __syncthreads() { emu_wait(emu_block_barrier); }
template <typename T> T __shfl_xor_sync(unsigned, T v, int offset) {
    unsigned tid = emu_tid();
    auto& bar = emu_warp_barriers[tid / 32];
    emu_slots[tid] = (double)v;
    emu_wait(bar);  // every lane has written its value ...
    T r = (T)emu_slots[tid ^ offset];
    emu_wait(bar);  // ... and read its partner's before any writes the next one
    return r;
}
// __shfl_sync: every lane reads lane `src`'s value (a broadcast when all pass the same src).
template <typename T> T __shfl_sync(unsigned, T v, int src) {
    unsigned tid = emu_tid();
    auto& bar = emu_warp_barriers[tid / 32];
    emu_slots[tid] = (double)v;
    emu_wait(bar);
    T r = (T)emu_slots[tid / 32 * 32 + (src & 31)];
    emu_wait(bar);
    return r;
}
inline float __int_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float atomicAdd(float* a, float v) { float old = *a; *a += v; return old; }
inline double atomicAdd(double* a, double v) { double old = *a; *a += v; return old; }

inline void emu_fiber_main() {
    emu_body();
    EmuFiber* me = emu_current;
    me->done = true;
    emu_drop(emu_warp_barriers[me->linear / 32]);
    emu_drop(emu_block_barrier);
    swapcontext(&me->ctx, &emu_main_ctx);
}

// Runs one block: always the first fiber in `order` that can run, until it waits or ends. So the
// first thread (and with it, through the shuffles, its warp) runs as far as it can before the next
// one moves: whatever a missing barrier lets one thread read or overwrite early, it does.
inline void emu_run_block(const std::vector<unsigned>& order, const char* name) {
    size_t remaining = order.size();
    while (remaining > 0) {
        EmuFiber* next = nullptr;
        for (unsigned i : order) {
            EmuFiber& f = emu_fibers[i];
            if (!f.done && !(f.waiting && f.waiting->generation == f.waiting_gen)) { next = &f; break; }
        }
        if (!next) {
            fprintf(stderr, "cuda_emu: %s block (%u,%u) deadlocks: %zu threads wait at a barrier that the others "
                            "never reach (a __syncthreads or shuffle in divergent code?)\n",
                    name, blockIdx.x, blockIdx.y, remaining);
            std::exit(2);
        }
        next->waiting = nullptr;
        emu_current = next;
        threadIdx = next->tid;
        swapcontext(&emu_main_ctx, &next->ctx);
        if (next->done) remaining--;
    }
}

template <typename... Args, typename... Vals>
void emu_launch_named(const char* name, void (*kernel)(Args...), dim3 grid, dim3 block, size_t shared, Vals... vals) {
    gridDim = grid;
    blockDim = block;
    emu_kernel_name = name;
    unsigned n = block.x * block.y;
    emu_dyn_shared_buf.assign(shared + 16, 0);
    emu_slots.assign(n, 0.0);
    while (emu_stacks.size() < n) emu_stacks.push_back(std::make_unique<char[]>(EMU_STACK));
    emu_fibers.assign(n, EmuFiber{});
    emu_body = [=] { kernel(((Args)vals)...); };
    std::mt19937 shuffle_rng(12345);
    for (unsigned bz = 0; bz < grid.z; bz++) {
    for (unsigned by = 0; by < grid.y; by++) {
        for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx = {bx, by, bz};
            emu_block_barrier = EmuBarrier{n};
            emu_warp_barriers.assign((n + 31) / 32, EmuBarrier{});
            for (unsigned w = 0; w < emu_warp_barriers.size(); w++) emu_warp_barriers[w].expected = std::min(32u, n - w * 32);
            for (unsigned i = 0; i < n; i++) {
                EmuFiber& f = emu_fibers[i];
                f = EmuFiber{};
                f.tid = {i % block.x, i / block.x, 0};
                f.linear = i;
                getcontext(&f.ctx);
                f.ctx.uc_stack.ss_sp = emu_stacks[i].get();
                f.ctx.uc_stack.ss_size = EMU_STACK;
                f.ctx.uc_link = nullptr;
                makecontext(&f.ctx, emu_fiber_main, 0);
            }
            // forwards, backwards, shuffled: a missing barrier shows whichever way its race runs
            std::vector<unsigned> order(n);
            std::iota(order.begin(), order.end(), 0u);
            unsigned kind = ((bz * grid.y + by) * grid.x + bx) % 3;
            if (kind == 1) std::reverse(order.begin(), order.end());
            if (kind == 2) std::shuffle(order.begin(), order.end(), shuffle_rng);
            emu_run_block(order, name);
        }
    }
    }
}
#define emu_launch(kernel, ...) emu_launch_named(#kernel, kernel, __VA_ARGS__)
