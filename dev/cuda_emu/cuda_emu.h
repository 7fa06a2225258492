// A tiny CUDA emulator: runs __global__ functions on the CPU, one OS thread per CUDA thread,
// one block at a time. __syncthreads is a block barrier, warp shuffles a per-warp exchange.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>
#include <functional>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* emu_block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> emu_warp_barriers;
inline std::vector<double> emu_slots;
inline std::vector<char> emu_dyn_shared_buf;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static

inline unsigned emu_tid() { return threadIdx.x + threadIdx.y * blockDim.x; }
inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }
template <typename T> T __shfl_xor_sync(unsigned, T v, int offset) {
    unsigned tid = emu_tid();
    auto& bar = *emu_warp_barriers[tid / 32];
    emu_slots[tid] = (double)v;
    bar.arrive_and_wait();
    T r = (T)emu_slots[tid ^ offset];
    bar.arrive_and_wait();
    return r;
}
inline float __int_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float atomicAdd(float* a, float v) { return std::atomic_ref<float>(*a).fetch_add(v); }
inline double atomicAdd(double* a, double v) { return std::atomic_ref<double>(*a).fetch_add(v); }

template <typename... Args, typename... Vals>
void emu_launch(void (*kernel)(Args...), dim3 grid, dim3 block, size_t shared, Vals... vals) {
    gridDim = grid;
    blockDim = block;
    unsigned n = block.x * block.y;
    emu_dyn_shared_buf.assign(shared + 16, 0);
    emu_slots.assign(n, 0.0);
    for (unsigned by = 0; by < grid.y; by++) {
        for (unsigned bx = 0; bx < grid.x; bx++) {
            std::barrier<> bar(n);
            emu_block_barrier = &bar;
            emu_warp_barriers.clear();
            for (unsigned w = 0; w < (n + 31) / 32; w++) {
                unsigned size = std::min(32u, n - w * 32);
                emu_warp_barriers.push_back(std::make_unique<std::barrier<>>(size));
            }
            std::vector<std::thread> threads;
            for (unsigned ty = 0; ty < block.y; ty++) {
                for (unsigned tx = 0; tx < block.x; tx++) {
                    threads.emplace_back([=, &bar] {
                        threadIdx = {tx, ty, 0};
                        blockIdx = {bx, by, 0};
                        kernel(((Args)vals)...);
                        emu_warp_barriers[emu_tid() / 32]->arrive_and_drop();
                        bar.arrive_and_drop();
                    });
                }
            }
            for (auto& t : threads) t.join();
        }
    }
}
