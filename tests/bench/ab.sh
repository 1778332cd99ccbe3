#!/usr/bin/env bash
# ab.sh - this tree against an earlier commit, side by side in one run: the
# machine is shared and noisy, so only runs interleaved in the same minutes
# compare. Builds REV's qwen in $BUILD/ab/REV (a git worktree), then
# alternates the two binaries ROUNDS times on each case and prints the best
# of each and their ratio.
#   usage: tests/bench/ab.sh REV [ROUNDS]      (make bench-ab BASE=REV)
# AB_ARGS adds qwen bench options to every case (AB_ARGS="--kernels avx2":
# the avx2 table on a host whose best table is another)
set -euo pipefail
BUILD=${BUILD:-build}
rev=${1:?usage: ab.sh REV [ROUNDS]}
rounds=${2:-3}
sha=$(git rev-parse --short "$rev")
base=$BUILD/ab/$sha
if [ ! -x "$base/build/qwen" ]; then
    rm -rf "$base"
    git worktree prune
    git worktree add --detach -f "$base" "$sha" >/dev/null
    make -C "$base" --no-print-directory -j2 build/qwen >/dev/null
fi
new=$BUILD/qwen
old=$base/build/qwen
models=$BUILD/models

# case: name, model, qwen bench arguments; the figure is the JSON field
cases=(
    "bf16 decode, 1 thread|full-bf16.gguf|-p 16 -n 48 -t 1|decode_tok_s"
    "bf16 decode, 2 threads|full-bf16.gguf|-p 16 -n 48 -t 2|decode_tok_s"
    "q8_0 decode, 2 threads|full-q8_0.gguf|-p 16 -n 64 -t 2|decode_tok_s"
    "q8_0 4 sequences, 2 threads|full-q8_0.gguf|-p 32 -n 64 -t 2 -s 4|decode_total_tok_s"
    "q4_k_m decode, 1 thread|full-q4_k_m.gguf|-p 16 -n 64 -t 1|decode_tok_s"
    "q4_k_m decode, 2 threads|full-q4_k_m.gguf|-p 16 -n 64 -t 2|decode_tok_s"
    "q4_k_m prefill 200, 2 threads|full-q4_k_m.gguf|-p 200 -n 1 -t 2|prefill_tok_s"
    "q4_k_m 4 sequences at 200-400, 2 threads|full-q4_k_m.gguf|-p 200 -n 200 -t 2 -s 4|decode_total_tok_s"
    "q8_0 prefill 200, 2 threads|full-q8_0.gguf|-p 200 -n 1 -t 2|prefill_tok_s"
    "bf16 prefill 200, 2 threads|full-bf16.gguf|-p 200 -n 1 -t 2|prefill_tok_s"
)

field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

printf '| case | %s | %s | ratio |\n|---|---|---|---|\n' "$sha" "$(git rev-parse --short HEAD)+"
for c in "${cases[@]}"; do
    IFS='|' read -r name model args key <<< "$c"
    best_old=0 best_new=0
    for r in $(seq "$rounds"); do
        # shellcheck disable=SC2086
        v=$("$old" bench -m "$models/$model" $args ${AB_ARGS:-} --json 2>/dev/null | tail -n 1 | field "$key")
        best_old=$(/usr/bin/python3 -c "print(max($best_old, $v))")
        # shellcheck disable=SC2086
        v=$("$new" bench -m "$models/$model" $args ${AB_ARGS:-} --json 2>/dev/null | tail -n 1 | field "$key")
        best_new=$(/usr/bin/python3 -c "print(max($best_new, $v))")
    done
    /usr/bin/python3 -c "print('| %s | %.1f | %.1f | %.2fx |' % ('$name', $best_old, $best_new, $best_new / $best_old))"
done
