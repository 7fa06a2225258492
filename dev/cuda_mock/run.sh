#!/usr/bin/env bash
# Checks src/cuda/gpt2.rs and src/cuda/backend.rs without a GPU: in a scratch copy of the repository,
# src/cuda/context.rs and src/cuda/kernels.rs are replaced by the stand-ins of this folder, which keep
# "device" buffers in host memory and make each launch wrapper call its CPU twin. tests/cuda.rs then
# runs against the CPU path, and the whole-model tests must agree bit for bit (max diff 0): any
# difference is a mistake in how src/cuda/gpt2.rs composes the layers, slices the buffers, or drives
# AdamW. (The kernels themselves are checked by dev/cuda_emu and, on a GPU, by tests/cuda.rs.)
#
#   dev/cuda_mock/run.sh      (builds into target/cuda_mock; a few minutes the first time)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$root"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$scratch"
cp dev/cuda_mock/context.rs dev/cuda_mock/kernels.rs "$scratch/src/cuda/"
# the stand-in "GPU" is always there
sed -i 's/^pub fn availability() -> Result<usize, String> {/&\n    return Ok(1);/' "$scratch/src/cuda/mod.rs"
sed -i 's/^pub fn free_memory(ordinal: usize) -> anyhow::Result<(usize, usize)> {/&\n    return Ok((80 << 30, 80 << 30));/' "$scratch/src/cuda/mod.rs"
cd "$scratch"
CARGO_TARGET_DIR="$root/target/cuda_mock" GPT_REQUIRE_CUDA=1 cargo test --test cuda -- --nocapture --test-threads=1 \
    training_steps checkpoints 2>&1 | grep -E "loss|max diff|^test " | tee "$scratch/log"
if grep -E "max diff" "$scratch/log" | grep -vqE "max diff +0\.00e0 "; then
    echo "cuda_mock: the GPU composition differs from the CPU path (see the non-zero max diff above)"
    exit 1
fi
if grep -E "loss: cpu" "$scratch/log" | awk '{ if ($(NF-2) != $NF) bad = 1 } END { exit !bad }'; then
    echo "cuda_mock: a loss differs between the GPU composition and the CPU path"
    exit 1
fi
grep -q "test result: ok" "$scratch/log" || { echo "cuda_mock: tests failed"; exit 1; }
echo "cuda_mock: src/cuda/gpt2.rs reproduces the CPU path bit for bit"
