#!/usr/bin/env bash
# run_fuzz.sh - runs libFuzzer targets for SECONDS each: first every input of
# tests/fuzz/corpus/<name>/ (the seeds and every input that once crashed, so
# each fixed crash stays a regression test), then new inputs for the rest of
# the time. A target passes when it ends without a crash, leak, timeout or
# sanitizer report. Prints per target the executions and coverage
# (libFuzzer's final stats), then "fuzz: N passed, N failed"; adds the
# totals to $TEST_TOTALS when set (tests/run_all.sh).
# Usage: run_fuzz.sh SECONDS BUILD/fuzz/fuzz_NAME...
# FUZZ_TIMEOUT: seconds one input may take (default 20). libFuzzer counts wall
# time: long runs next to benchmarks that SIGSTOP fuzz_* want it large.
set -u
secs=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
passed=0; failed=0
for bin in "$@"; do
    name=$(basename "$bin"); short=${name#fuzz_}
    work=$(dirname "$bin")
    mkdir -p "$work/corpus/$short" "$work/artifacts" "$here/corpus/$short"
    case $short in
        gguf) dict=$here/gguf.dict ;;
        *)    dict=$here/json.dict ;;
    esac
    log=$work/$name.log
    # new inputs go to the build tree; the repository's corpus is only read
    "$bin" -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-20}" -rss_limit_mb=3072 -max_len=65536 \
        -dict="$dict" -print_final_stats=1 -artifact_prefix="$work/artifacts/$name-" \
        "$work/corpus/$short" "$here/corpus/$short" > "$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $name: ${runs:-?} runs, ${cov:-no coverage line} in ${secs}s: passed"
        passed=$((passed + 1))
    else
        grep -E 'ERROR|SUMMARY|invariant|runtime error|Test unit written|^    #[0-9]+ ' "$log" \
            | head -n 40
        echo "fuzz $name: exit status $rc after ${runs:-?} runs (log $log): failed"
        failed=$((failed + 1))
    fi
done
if [ -n "${TEST_TOTALS:-}" ]; then echo "$passed $failed" >> "$TEST_TOTALS"; fi
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
