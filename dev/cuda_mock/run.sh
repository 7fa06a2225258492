#!/usr/bin/env bash
# Checks src/cuda/gpt2.rs and src/cuda/backend.rs without a GPU: built with `--cfg gpt2_cuda_mock`,
# src/cuda/mod.rs takes src/cuda/context.rs and the whole src/cuda/kernels/ folder from the stand-ins
# of this folder (context.rs, and kernels.rs for kernels/), which keep "device" buffers in host memory
# and make each launch wrapper call its CPU twin, and its availability functions report the stand-in
# GPU. tests/cuda.rs then runs against the CPU path, and the whole-model tests must agree to rounding
# (bit for bit when CpuBackend uses the same reference layers): a larger difference is a mistake in how
# src/cuda/gpt2.rs composes the layers, slices the buffers, or drives AdamW. (The kernels themselves
# are checked by dev/cuda_emu and, on a GPU, by tests/cuda.rs.)
#
#   dev/cuda_mock/run.sh      (builds into target/cuda_mock, since the --cfg changes every crate's
#                              build: the first time about as long as `cargo test --release` from nothing)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$root"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg gpt2_cuda_mock" CARGO_TARGET_DIR="$root/target/cuda_mock" GPT_REQUIRE_CUDA=1
# cuda_tests FILTER...: tests/cuda.rs's tests matching each filter (its harness takes one at a time)
cuda_tests() {
    for filter in "$@"; do
        cargo test --release --test cuda -- --test-threads=1 "$filter"
    done
}
cuda_tests training_steps checkpoints memory_plan 2>&1 | grep -E "loss|max diff|^test |allocated" | tee "$scratch/log"
# The stand-ins call the reference layers of src/cpu/: against a CpuBackend on the same layers every
# difference is exactly 0. If CpuBackend uses faster layers (other summation orders), gradients
# differ at rounding level (below 1e-6) and AdamW can turn a rounding-level difference of a
# near-zero gradient into up to lr (1e-3) in its parameter; a composition mistake gives differences
# of order 1 in some gradient.
worst=$(grep -E "max diff" "$scratch/log" | grep -v "params after" | grep -oE "max diff +[0-9.e+-]+" \
    | awk '{ if ($3 + 0 > w) w = $3 + 0 } END { print w + 0 }')
worst_params=$(grep -E "params after" "$scratch/log" | grep -oE "max diff +[0-9.e+-]+" \
    | awk '{ if ($3 + 0 > w) w = $3 + 0 } END { print w + 0 }')
if awk -v w="$worst" -v p="$worst_params" 'BEGIN { exit !(w > 1e-6 || p > 1e-3) }'; then
    echo "cuda_mock: the GPU composition differs from the CPU path: gradients by $worst, parameters by $worst_params"
    exit 1
fi
grep -q "test result: ok" "$scratch/log" || { echo "cuda_mock: tests failed"; exit 1; }
echo "cuda_mock: src/cuda/gpt2.rs reproduces the CPU path (largest differences: $worst in gradients, $worst_params in parameters)"

# bf16: the stand-ins call the CPU's bf16 reference layers (src/cpu/bf16.rs), so against the CPU in
# bf16 with the same layers every difference is exactly 0 (the lines "vs CPU bf16 reference"); the
# tests also check the tolerances meant for a real GPU (against the CPU's fast bf16 layers, which sum
# in other orders, and against fp32).
cuda_tests bf16_ 2>&1 | grep -E "loss|max diff|differ|^test |allocated" | tee "$scratch/log_bf16"
worst_bf16=$(grep -E "vs CPU bf16 reference" "$scratch/log_bf16" | grep -oE "max diff +[0-9.e+-]+" \
    | awk '{ if ($3 + 0 > w) w = $3 + 0 } END { print w + 0 }')
if awk -v w="$worst_bf16" 'BEGIN { exit !(w > 0) }'; then
    echo "cuda_mock: the GPU's bf16 composition differs from the CPU's bf16 reference layers by $worst_bf16"
    exit 1
fi
grep -q "test result: ok" "$scratch/log_bf16" || { echo "cuda_mock: bf16 tests failed"; exit 1; }
echo "cuda_mock: src/cuda/gpt2.rs in bf16 reproduces the CPU's bf16 path exactly (largest difference: $worst_bf16)"

# bf16 with --matmul cublas: the stand-ins of kernels/cublaslt.rs's calls (the fused GELU taken of
# the fp32 sums, as cuBLASLt's epilogue does) against the CPU's bf16 layers, which round the pre-GELU
# first: not exact, so these tests check their own tolerances (those of the bf16 steps) and print
# "vs CPU bf16 ref. layers (GELU fused)".
cuda_tests cublaslt_ 2>&1 | grep -E "loss|max diff|differ|^test |error" | tee "$scratch/log_lt"
worst_lt=$(grep -E "GELU fused" "$scratch/log_lt" | grep -v "params after" | grep -oE "relative +[0-9.e+-]+" \
    | awk '{ if ($2 + 0 > w) w = $2 + 0 } END { print w + 0 }')
grep -q "test result: ok" "$scratch/log_lt" || { echo "cuda_mock: cuBLASLt (bf16) tests failed"; exit 1; }
echo "cuda_mock: src/cuda/gpt2.rs in bf16 with the cuBLASLt stand-ins matches the CPU's bf16 path (largest gradient difference: $worst_lt of its tensor's largest entry)"
