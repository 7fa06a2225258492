#!/usr/bin/env bash
# The exercise mechanism, both ways (EXERCISES.md): with every blank of exercises/ swapped in
# (`--features exercises`), each layer's gradient check, the AdamW check and the BPE merge check must fail, naming the
# exercise and its file; the plain `cargo test --release` of .ci/run checks that the reference passes.
set -uo pipefail
cd "$(dirname "$0")/.."
out="$(cargo test --release --features exercises --test gradcheck 2>&1)"
status=$?
if [ $status -eq 0 ]; then
    echo "check-exercises: the gradient checks passed with the blanks of exercises/ swapped in: they judge nothing"
    exit 1
fi
failed=0
for pair in residual_backward:residual encoder_backward:encoder gelu_backward:gelu matmul_backward:matmul \
    layernorm_backward:layernorm crossentropy_softmax_backward:softmax_crossentropy attention_backward:attention; do
    fn="${pair%%:*}"; file="${pair##*:}"
    if grep -q "exercise $fn: write it in exercises/$file.rs" <<<"$out"; then
        echo "check-exercises: the blank $fn fails its check, naming exercises/$file.rs"
    else
        echo "check-exercises: the blank $fn did not fail with its message"; failed=1
    fi
done
out="$(cargo test --release --features exercises --lib adamw 2>&1)"
if grep -q "exercise adamw_update: write it in exercises/adamw.rs" <<<"$out"; then
    echo "check-exercises: the blank adamw_update fails its check, naming exercises/adamw.rs"
else
    echo "check-exercises: the blank adamw_update did not fail with its message"; failed=1
fi
out="$(cargo test --release --features exercises --test commands tokenizer_train:: 2>&1)"
if grep -q "exercise merge_and_update: write it in exercises/bpe_merge.rs" <<<"$out"; then
    echo "check-exercises: the blank merge_and_update fails its check, naming exercises/bpe_merge.rs"
else
    echo "check-exercises: the blank merge_and_update did not fail with its message"; failed=1
fi
exit $failed
