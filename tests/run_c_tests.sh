#!/usr/bin/env bash
# run_c_tests.sh - runs C test binaries, each ending on "N passed, N failed",
# and prints the sum on the same form. A binary that dies or prints no
# summary counts as one failure, so a crash can never pass unnoticed.
# Usage: run_c_tests.sh LABEL BINARY...   (writes totals to $TEST_TOTALS if set)
set -u
label=$1; shift
passed=0; failed=0
for t in "$@"; do
    name=$(basename "$t")
    out=$("$t" 2>&1); rc=$?
    summary=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$summary" ]; then
        printf '%s\n' "$out" | tail -n 30
        echo "$label $name: no summary line (exit status $rc): counted as 1 failure"
        failed=$((failed + 1)); continue
    fi
    p=${summary%% passed*}; f=${summary#*, }; f=${f%% failed*}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    if [ "$f" -ne 0 ]; then printf '%s\n' "$out" | grep -v '^[0-9]* passed' | tail -n 40; fi
    echo "$label $name: $p passed, $f failed"
    passed=$((passed + p)); failed=$((failed + f))
done
if [ -n "${TEST_TOTALS:-}" ]; then echo "$passed $failed" >> "$TEST_TOTALS"; fi
echo "$label: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
