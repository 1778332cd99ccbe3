#!/usr/bin/env bash
# run.sh - make bench: prefill and decode speed of the engine on the
# full-shape models, 1 and 2 threads, each format measured in the same run.
# Writes $BUILD/bench/results.jsonl and prints a table.
set -euo pipefail
BUILD=${BUILD:-build}
out=$BUILD/bench
mkdir -p "$out"
: > "$out/results.jsonl"
for fmt in $BENCH_FORMATS; do
    model=$BUILD/models/full-$fmt.gguf
    for t in 1 2; do
        echo "== $fmt, $t thread(s)" >&2
        "$BUILD/qwen" bench -m "$model" -p "$BENCH_PROMPT" -n "$BENCH_GEN" -t "$t" --json \
            | tee -a "$out/results.jsonl"
    done
done
# tokenizer encode throughput on ~8 MB of the test corpus (prose, code, CJK,
# emoji, whitespace runs), next to the prefill speed it must not limit
text=$out/tokenizer_text.txt
/usr/bin/python3 - tests/tokenizer/corpus.json "$text" <<'PY'
import json, sys
parts = json.load(open(sys.argv[1], encoding="utf-8"))
blob = "\n".join(parts)
with open(sys.argv[2], "w", encoding="utf-8", errors="surrogatepass") as f:
    n = 0
    while n < 8 << 20:
        f.write(blob)
        n += len(blob.encode("utf-8", "surrogatepass"))
PY
echo "== tokenizer" >&2
"$BUILD/qwen" tokenize -m "$BUILD/models/tiny-f32-hf" --text-file "$text" --bench | tee "$out/tokenizer.txt"

echo
printf '%-8s %-8s %12s %12s\n' format threads prefill/s decode/s
while read -r line; do
    w=$(sed -E 's/.*"weights":"([^"]*)".*/\1/' <<<"$line")
    t=$(sed -E 's/.*"threads":([0-9]+).*/\1/' <<<"$line")
    p=$(sed -E 's/.*"prefill_tok_s":([0-9.]+).*/\1/' <<<"$line")
    d=$(sed -E 's/.*"decode_tok_s":([0-9.]+).*/\1/' <<<"$line")
    printf '%-8s %-8s %12s %12s\n' "${w%% *}" "$t" "$p" "$d"
done < "$out/results.jsonl"
