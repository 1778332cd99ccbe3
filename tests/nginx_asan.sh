#!/bin/sh
# nginx_asan.sh - Debian's nginx with AddressSanitizer preloaded, for a
# module built with -fsanitize=address (tests/run_all.sh points the Perl
# harness's QWEN_NGINX_BIN here). Reports go to $QWEN_ASAN_LOG_DIR; any
# report fails the suite. Leak checking is off: nginx's own pools free at
# exit by design.
LD_PRELOAD=$(gcc -print-file-name=libasan.so) \
ASAN_OPTIONS=detect_leaks=0:detect_odr_violation=0:log_path=${QWEN_ASAN_LOG_DIR:-/tmp}/asan \
    exec /usr/sbin/nginx "$@"
