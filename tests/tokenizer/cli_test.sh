#!/usr/bin/env bash
# cli_test.sh - the tokenizer commands of build/qwen against the references
# (run from make test with QWEN_TOKENIZER_DIR set).
exec /usr/bin/python3 "$(dirname "$0")/cli_test.py" "${BUILD:-build}/qwen" "$TOK_PKG"
