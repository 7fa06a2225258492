#!/usr/bin/env bash
# Shows that dev/cuda_emu/run.sh would catch the mistakes that matter (bf16 rounding, the matmul's
# double buffering, wide loads and split-K): each mutant below plants one in a scratch copy of
# kernels/, and run.sh must then FAIL. A check of the checks, not part of CI
# (each mutant is a full emulator run, about a minute here).
#
#   dev/cuda_emu/mutants.sh
#
# The mutants: truncation instead of round-to-nearest-even; a NaN that is not kept a NaN; a bf16-only
# double rounding (attention's dk rounded before it is added to the old value, then the sum rounded
# again: in fp32 the same code is exact, so only the bf16 comparison can see it); a bf16 kernel
# that forgets the old value of a gradient it should add to; and in matmul version 3, the barrier
# between the two shared-memory buffers left out, the next slice written into the buffer being read
# (one buffer, one barrier: a race), a 128-bit load that mixes up its 4 numbers (only the wide path
# sees it, so this shows the tests take it), a wide load without the alignment check (the emulator
# stops at a misaligned vector access, as a GPU would), and a split-K reduction that drops the last slice.
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
mutant missing-barrier kernels/matmul.cu '/and this one barrier makes it visible before anyone reads it/{n;d}'
mutant one-buffer kernels/matmul.cu 's/store_slice3((float\*)As4\[buf ^ 1\], a_next, sam);/store_slice3((float*)As4[buf], a_next, sam);/'
mutant wide-load-order kernels/matmul.cu 's/^    v\[0\] = q.x;$/    v[0] = q.y;/'
mutant alignment-unchecked kernels/matmul.cu 's/    bool wide_a = aligned4(A) \&\& /    bool wide_a = /'
mutant splitk-last-slice-dropped kernels/matmul.cu 's/for (int s = 0; s < S; s++) sum += partials/for (int s = 0; s < S - 1; s++) sum += partials/'
echo "mutants: every planted mistake fails dev/cuda_emu/run.sh"
