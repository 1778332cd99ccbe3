#!/usr/bin/env bash
# check_symbols.sh - the static libraries export only their own prefix
# (libqwen.a: qwen_*, libqwenproto.a: qp_*), so linking them into nginx or
# beside jansson cannot collide with another library's names (a generic
# utf8_encode once clashed with jansson's own). One check per library.
set -u
BUILD=${BUILD:-build}
passed=0; failed=0
check() {
    local lib=$1 prefix=$2 others
    others=$(nm -g --defined-only "$lib" 2>/dev/null | awk 'NF == 3 {print $3}' \
             | grep -v "^$prefix" | sort -u)
    if [ -f "$lib" ] && [ -z "$others" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $lib exports names without the $prefix prefix (or is missing):" $others
    fi
}
check "$BUILD/libqwen.a" qwen_
check "$BUILD/libqwenproto.a" qp_
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
