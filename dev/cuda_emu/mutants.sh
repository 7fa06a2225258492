#!/usr/bin/env bash
# Shows that dev/cuda_emu/run.sh would catch the bf16 mistakes that matter: each mutant below plants
# one in a scratch copy of kernels/, and run.sh must then FAIL. A check of the checks, not part of CI
# (each mutant is a full emulator run, about a minute here).
#
#   dev/cuda_emu/mutants.sh
#
# The mutants: truncation instead of round-to-nearest-even; a NaN that is not kept a NaN; a bf16-only
# double rounding (attention's dk rounded before it is added to the old value, then the sum rounded
# again: in fp32 the same code is exact, so only the bf16 comparison can see it); and a bf16 kernel
# that forgets the old value of a gradient it should add to.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

mutant() {  # name, file, sed expression
    local name="$1" file="$2" expr="$3" dir="$scratch/$1"
    mkdir -p "$dir"
    (cd "$root" && git ls-files -z --cached --others --exclude-standard -- kernels dev/cuda_emu src/cuda/kernels \
        | xargs -0 cp --parents -t "$dir")
    sed -i "$expr" "$dir/$file"
    if cmp -s "$root/$file" "$dir/$file"; then
        echo "mutants: $name did not change $file (the code it edits has moved?)" >&2
        exit 1
    fi
    if "$dir/dev/cuda_emu/run.sh" > "$dir/log" 2>&1; then
        echo "mutants: $name was NOT caught: dev/cuda_emu/run.sh passes with it" >&2
        exit 1
    fi
    echo "$name: caught ($(grep -c 'FAIL' "$dir/log") failing checks), e.g.:"
    grep -m 2 'FAIL' "$dir/log" | cut -c1-160 | sed 's/^/    /'
}

mutant truncation kernels/bf16.cuh 's/(bits + 0x7fffu + lsb) >> 16/bits >> 16/'
mutant nan-not-kept kernels/bf16.cuh 's/if ((bits \& 0x7fffffffu) > 0x7f800000u) {/if (false) {/'
mutant double-rounding kernels/attention.cu \
    's/store(&dk_g\[ch\], to_float(dk_g\[ch\]) + dk\[k\] \* scale);/{ floatX r; store(\&r, dk[k] * scale); store(\&dk_g[ch], to_float(dk_g[ch]) + to_float(r)); }/'
mutant old-value-dropped kernels/gelu.cu \
    's/extern "C" __global__ void gelu_backward_bf16(bf16\* dinp, const bf16\* inp, const bf16\* dout, long long N) {/&\n    for (long long i = 0; i < N; i++) dinp[i].bits = 0;/'
echo "mutants: every planted bf16 mistake fails dev/cuda_emu/run.sh"
