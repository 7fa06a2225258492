#!/usr/bin/env bash
# Reads the log of `cargo test --release` (.ci/run) and checks that tests which cannot run here are
# counted as ignored, not as passed (tests/common/harness.rs), and that CI's NVRTC did run the kernel
# compilation tests:
# - tests/kernels_compile.rs: with libnvrtc installed (.ci/install-nvrtc.sh), none ignored, and
#   every_kernel_compiles_... ok;
# - tests/cuda.rs: on a machine with no GPU (CI's), each test needing one is reported
#   "ignored (no usable GPU: ...)", and the summary line counts exactly those as ignored.
#
#   .ci/check-ignored.sh LOG
set -euo pipefail
log="$1"
# section NAME: the lines of the log from "Running tests/NAME.rs" to that binary's "test result:" line
section() {
    awk -v start="Running tests/$1.rs" 'index($0, start) { on = 1 } on { print } on && /^test result:/ { exit }' "$log"
}
failed=0
kc="$(section kernels_compile)"
if [ -z "$kc" ]; then echo "check-ignored: tests/kernels_compile.rs did not run"; exit 1; fi
if grep -q "^test result: ok\. [0-9]* passed; 0 failed; 0 ignored" <<<"$kc" \
    && grep -q "^test every_kernel_compiles_with_nvrtc_to_a_cubin_for_sm_80_and_sm_90 *\.\.\. ok" <<<"$kc"; then
    echo "check-ignored: tests/kernels_compile.rs ran every test, none ignored: $(grep '^test result' <<<"$kc")"
else
    echo "check-ignored: tests/kernels_compile.rs did not run all its tests with NVRTC installed:"
    grep -E "^test " <<<"$kc"; failed=1
fi
cuda="$(section cuda)"
if [ -z "$cuda" ]; then echo "check-ignored: tests/cuda.rs did not run"; exit 1; fi
without_gpu=$(grep -c "^test .* \.\.\. ignored (no usable GPU: " <<<"$cuda" || true)
counted=$(grep -oE "^test result: ok\. [0-9]+ passed; 0 failed; [0-9]+ ignored" <<<"$cuda" | grep -oE "[0-9]+ ignored" | grep -oE "[0-9]+" || true)
if [ "$without_gpu" -gt 0 ] && [ "$counted" = "$without_gpu" ]; then
    echo "check-ignored: tests/cuda.rs without a GPU: $without_gpu tests reported ignored with the reason, and counted so: $(grep '^test result' <<<"$cuda")"
else
    echo "check-ignored: tests/cuda.rs: $without_gpu tests said 'ignored (no usable GPU: ...)' but the summary counts '${counted:-?}' ignored (or there is a GPU here)"
    grep -E "^test " <<<"$cuda"; failed=1
fi
exit $failed
