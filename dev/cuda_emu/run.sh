#!/usr/bin/env bash
# Runs every kernel of kernels/ on the CPU, in a tiny CUDA emulator, against plain C++ loops that
# restate the CPU layers of src/cpu/, with the launch configurations of src/cuda/kernels.rs.
# A check for machines without a GPU: it catches indexing, guard and synchronization-logic bugs,
# not what only hardware shows (speed, the memory model, real warp scheduling).
#
#   dev/cuda_emu/run.sh        (needs g++ with C++20; about a minute on 2 cores)
#   dev/cuda_emu/run.sh big    (GPT-2-sized cases: C=768, K=3071, hs=64, the full vocabulary)
#
# cuda_emu.h runs one OS thread per CUDA thread and one block at a time: __syncthreads is a block
# barrier, __shfl_xor_sync a per-warp exchange, __shared__ a static, atomicAdd an atomic_ref.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
for f in "$here"/../../kernels/*.cu; do
    # dynamic shared memory comes from the emulator's buffer
    sed 's/extern __shared__ float shared\[\];/float* shared = (float*)emu_dyn_shared_buf.data();/' "$f" > "$build/$(basename "$f")"
done
cp "$here/cuda_emu.h" "$here/test.cpp" "$build/"
g++ -std=c++20 -O1 -pthread -o "$build/test" "$build/test.cpp"
"$build/test" "$@"
