#!/usr/bin/env bash
# run_all.sh - the driver behind `make test`: the C unit tests (engine,
# tokenizer, chat template, protocol layer), the same under ASan/UBSan, the
# CLI tests, the fuzz targets briefly, and the nginx tests through prove;
# then one closing line "N passed, N failed" summing every suite. Exits non-zero on any failure.
# Expects the environment make sets up (BUILD, QWEN_TEST_MODELS,
# QWEN_TOKENIZER_DIR, QWEN_TOKENIZER_REFS, TOK_PKG).
set -u
BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
TEST_TOTALS=$(mktemp)
export TEST_TOTALS
status=0

suite() { "$here/run_c_tests.sh" "$@" || status=1; echo; }

unit=$(ls "$BUILD"/tests/test_* 2>/dev/null | grep -v '_asan$')
suite unit $unit

# the sanitizer builds make test made (ASAN_BINS), not whatever else is there
[ -n "${ASAN_BINS:-}" ] && ASAN_OPTIONS=detect_leaks=1 suite asan $ASAN_BINS

suite cli "$here/tokenizer/cli_test.sh"

# the libraries export only their own prefixes (nm)
suite symbols "$here/check_symbols.sh"

# where make run finds a model (a temporary HOME, no network)
suite run "$here/run_discovery.sh"

# the libFuzzer targets (mk/fuzz.mk): their corpus (seeds and every input
# that once crashed) and then FUZZ_TEST_SECONDS of new inputs each
if [ -n "${FUZZ_BINS:-}" ]; then
    "$here/fuzz/run_fuzz.sh" "${FUZZ_TEST_SECONDS:-15}" $FUZZ_BINS || status=1; echo
fi

# arm64 kernels under qemu, one suite per emulated CPU model
if [ -n "${QWEN_ARM64_RUNS:-}" ]; then
    for dir in "$QWEN_ARM64_RUNS"/*; do
        [ -d "$dir" ] && suite "arm64-$(basename "$dir")" "$dir"/*
    done
fi

# the avx512 table's kernels on SIMDe (x86 machines without AVX-512 too)
if [ -n "${QWEN_X86EMU_RUNS:-}" ]; then
    for dir in "$QWEN_X86EMU_RUNS"/*; do
        [ -d "$dir" ] && suite "$(basename "$dir")" "$dir"/*
    done
fi

if [ -n "$(ls t/*.t 2>/dev/null)" ]; then
    out=$(prove -r t/ 2>&1); rc=$?
    printf '%s\n' "$out"
    tests=$(printf '%s\n' "$out" | sed -n 's/.*Tests=\([0-9]*\).*/\1/p' | tail -n 1)
    failed=$(printf '%s\n' "$out" | sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' \
             | awk '{s += $1} END {print s + 0}')
    tests=${tests:-0}
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    echo "$((tests - failed < 0 ? 0 : tests - failed)) $failed" >> "$TEST_TOTALS"
    [ "$rc" -eq 0 ] || status=1
fi

# the nginx tests again with the module built with AddressSanitizer: every
# test must pass and no worker may write an ASan report
if [ -n "${QWEN_NGINX_ASAN_MODULE:-}" ] && [ -n "$(ls t/*.t 2>/dev/null)" ]; then
    logs=$(mktemp -d)
    # the workers run as nobody: they must be able to write their reports
    chmod 1777 "$logs"
    out=$(QWEN_NGINX_MODULE=$QWEN_NGINX_ASAN_MODULE QWEN_NGINX_BIN="$here/nginx_asan.sh" \
          QWEN_ASAN_LOG_DIR=$logs QWEN_TEST_TMP=${QWEN_TEST_TMP:-build/t}-asan \
          prove -r t/ 2>&1); rc=$?
    # the failures' own lines (which file and test, and why), then the summary
    printf '%s\n' "$out" | grep -E -A8 '^t/.*\.t \.+ *$|^#   Failed test|^Dubious' \
        | grep -Ev '^t/.*\.t \.+ ok$' || true
    printf '%s\n' "$out" | tail -n 4
    tests=$(printf '%s\n' "$out" | sed -n 's/.*Tests=\([0-9]*\).*/\1/p' | tail -n 1)
    failed=$(printf '%s\n' "$out" | sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' \
             | awk '{s += $1} END {print s + 0}')
    tests=${tests:-0}
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    reports=$(ls "$logs" | wc -l)
    if [ "$reports" -gt 0 ]; then
        echo "nginx-asan: $reports AddressSanitizer report(s):"; head -n 40 "$logs"/*
        failed=$((failed + 1))
    fi
    rm -rf "$logs"
    echo "nginx-asan: $((tests - failed < 0 ? 0 : tests - failed)) passed, $failed failed"
    echo "$((tests - failed < 0 ? 0 : tests - failed)) $failed" >> "$TEST_TOTALS"
    [ "$rc" -eq 0 ] && [ "$reports" -eq 0 ] || status=1
fi

read -r passed failed < <(awk '{p += $1; f += $2} END {print p + 0, f + 0}' "$TEST_TOTALS")
rm -f "$TEST_TOTALS"
[ "$failed" -eq 0 ] || status=1
echo "$passed passed, $failed failed"
exit $status
