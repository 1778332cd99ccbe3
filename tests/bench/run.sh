#!/usr/bin/env bash
# run.sh - make bench: the engine on the full Qwen3-0.6B-shape models in each
# format, all measured in this one run so the figures compare (the machine
# is shared and noisy: compare ratios, not absolute numbers across runs).
#   - memory read bandwidth (1 and 2 threads) and the decode roofline
#     (bandwidth / bytes of weights read per token)
#   - prefill and decode tok/s with 1 and 2 threads (best of 2 runs each)
#   - total decode throughput with 1, 4 and 8 sequences batched (1 and 2
#     threads),
#     and 4 sequences at longer contexts with each KV cache format
#   - 1 and 4 streaming clients through nginx (conf/nginx.conf)
#   - tokenizer encode throughput
# Writes $BUILD/bench/: results.jsonl, table.md (also printed), throughput.png.
set -euo pipefail
BUILD=${BUILD:-build}
FORMATS=${BENCH_FORMATS:-bf16 q8_0 q4_k_m}
P=${BENCH_PROMPT:-200}
N=${BENCH_GEN:-200}
out=$BUILD/bench
mkdir -p "$out"
res=$out/results.jsonl
: > "$res"
qwen=$BUILD/qwen

echo "== memory bandwidth" >&2
for t in 1 2; do
    "$qwen" membw -t "$t" | sed "s/^{/{\"kind\":\"membw\",/" >> "$res"
done

for fmt in $FORMATS; do
    model=$BUILD/models/full-$fmt.gguf
    for t in 1 2; do
        echo "== $fmt: prefill $P, decode $N, $t thread(s)" >&2
        "$qwen" bench -m "$model" -p "$P" -n "$N" -t "$t" --repeat 2 --json \
            | sed "s/^{/{\"kind\":\"speed\",\"format\":\"$fmt\",/" >> "$res"
    done
    for t in 1 2; do
        for s in 1 4 8; do
            echo "== $fmt: $s sequences decoded together, $t thread(s)" >&2
            "$qwen" bench -m "$model" -p 32 -n 64 -t "$t" -s "$s" --repeat 2 --json \
                | sed "s/^{/{\"kind\":\"batch\",\"format\":\"$fmt\",/" >> "$res"
        done
    done
done

# 4 sequences at positions 200-400 (where the KV cache is read as much as
# the weights) with each KV cache format the kernels have, and at 2000-2400
# (where it is read several times as much) in f16 and q8_0, which halves it
q4=$BUILD/models/full-q4_k_m.gguf
if [ -f "$q4" ]; then
    for kv in f32 f16 bf16 q8_0; do
        if "$qwen" bench -m "$q4" -p 16 -n 1 -t 1 --kv "$kv" --json >/dev/null 2>&1; then
            echo "== q4_k_m: 4 sequences, positions 200-400, $kv KV cache" >&2
            "$qwen" bench -m "$q4" -p 200 -n 200 -t 2 -s 4 --kv "$kv" --repeat 2 --json \
                | sed "s/^{/{\"kind\":\"kv\",\"format\":\"q4_k_m\",/" >> "$res"
        fi
    done
    for kv in f16 q8_0; do
        echo "== q4_k_m: 4 sequences, positions 2000-2400, $kv KV cache" >&2
        "$qwen" bench -m "$q4" -p 2000 -n 400 -t 2 -s 4 --kv "$kv" --repeat 2 --json \
            | sed "s/^{/{\"kind\":\"kv\",\"format\":\"q4_k_m\",/" >> "$res"
    done
fi

# through nginx: conf/nginx.conf (one worker, 4 slots) serving the Q4_K_M
# model, 1 and 4 streaming clients of 200 prompt + 200 generated tokens,
# the published Ollama/llama.cpp server test
NGX_BIN=${NGX_BIN:-/usr/sbin/nginx}
if [ -x "$NGX_BIN" ] && [ -f "$BUILD/ngx_http_qwen_module.so" ] \
        && [ -f "$BUILD/models/full-q4_k_m.gguf" ]; then
    run=$(realpath -m "$out/nginx")
    port=${BENCH_PORT:-18089}
    mkdir -p "$run/logs" "$run/temp"
    sed -e "s|@MODULE@|$(realpath "$BUILD/ngx_http_qwen_module.so")|g" \
        -e "s|@MODEL@|\"$(realpath "$BUILD/models/full-q4_k_m.gguf")\"|g" \
        -e "s|@PORT@|$port|g" -e "s|^error_log .*|error_log logs/error.log notice;|" \
        conf/nginx.conf > "$run/nginx.conf"
    "$NGX_BIN" -p "$run/" -c "$run/nginx.conf"
    trap '"$NGX_BIN" -p "$run/" -c "$run/nginx.conf" -s stop 2>/dev/null || true' EXIT
    for i in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    for c in 1 4; do
        for r in 1 2; do
            echo "== nginx: $c client(s), 200 + 200 tokens, Q4_K_M (run $r)" >&2
            /usr/bin/python3 tests/bench/clients.py "$port" "$c" "$P" "$N" \
                | sed "s/^{/{\"kind\":\"nginx\",/" >> "$res"
        done
    done
    "$NGX_BIN" -p "$run/" -c "$run/nginx.conf" -s stop
    trap - EXIT
else
    echo "== nginx: skipped (needs $NGX_BIN, the module and the Q4_K_M model)" >&2
fi

# tokenizer encode throughput on ~8 MB of the test corpus (prose, code, CJK,
# emoji, whitespace runs): it must not limit prefill
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
"$qwen" tokenize -m "$BUILD/models/tiny-f32-hf" --text-file "$text" --bench \
    | tee "$out/tokenizer.txt" >&2

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
/usr/bin/python3 - "$res" "$out" "$commit" "$(cat "$out/tokenizer.txt" | tail -n 1)" <<'PY'
import json, sys
res, out, commit, tok = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [json.loads(l) for l in open(res)]
bw = {r["threads"]: r["read_gb_s"] for r in rows if r["kind"] == "membw"}
lines = []
lines.append("Commit %s. Memory read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (2 threads)."
             % (commit, bw.get(1, 0), bw.get(2, 0)))
lines.append("")
lines.append("| format | threads | prefill tok/s | decode tok/s | roofline tok/s | decode / roofline |")
lines.append("|---|---|---|---|---|---|")
for r in rows:
    if r["kind"] != "speed":
        continue
    roof = bw.get(r["threads"], 0) * 1e9 / r["weight_bytes"]
    lines.append("| %s | %d | %.1f | %.1f | %.1f | %.0f%% |"
                 % (r["format"], r["threads"], r["prefill_tok_s"], r["decode_tok_s"], roof,
                    100 * r["decode_tok_s"] / roof if roof else 0))
lines.append("")
lines.append("| format | threads | sequences | total decode tok/s | per sequence |")
lines.append("|---|---|---|---|---|")
plot = {}
for r in rows:
    if r["kind"] != "batch":
        continue
    lines.append("| %s | %d | %d | %.1f | %.1f |"
                 % (r["format"], r["threads"], r["seqs"], r["decode_total_tok_s"],
                    r["decode_tok_s"]))
    key = "%s, %d thread%s" % (r["format"], r["threads"], "s" if r["threads"] > 1 else "")
    plot.setdefault(key, []).append((r["seqs"], r["decode_total_tok_s"]))
kv = [r for r in rows if r["kind"] == "kv"]
if kv:
    lines.append("")
    lines.append("| format | KV cache | 4 sequences, positions | total decode tok/s |")
    lines.append("|---|---|---|---|")
    for r in kv:
        lines.append("| %s | %s | %d-%d | %.1f |"
                     % (r["format"], r["kv"], r["n_prompt"], r["n_prompt"] + r["n_predict"],
                        r["decode_total_tok_s"]))
ng = {}
for r in rows:
    if r["kind"] == "nginx":
        b = ng.get(r["clients"])
        if b is None or r["total_tok_s"] > b["total_tok_s"]:
            ng[r["clients"]] = r
if ng:
    lines.append("")
    lines.append("Through nginx (conf/nginx.conf, Q4_K_M, %d prompt + %d generated tokens, "
                 "streamed /v1/completions, best of 2):"
                 % (next(iter(ng.values()))["prompt"], next(iter(ng.values()))["gen"]))
    lines.append("")
    lines.append("| clients | time to first token (mean, max) | end to end (mean, max) | total tok/s |")
    lines.append("|---|---|---|---|")
    for c in sorted(ng):
        r = ng[c]
        lines.append("| %d | %.2f s, %.2f s | %.2f s, %.2f s | %.1f |"
                     % (c, r["ttft_s"], r["ttft_max_s"], r["e2e_s"], r["e2e_max_s"],
                        r["total_tok_s"]))
lines.append("")
lines.append("Tokenizer: " + tok)
open(out + "/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
with open(out + "/throughput.dat", "w") as f:
    for fmt, pts in plot.items():
        f.write("# %s\n" % fmt)
        for s, v in pts:
            f.write("%d %.2f\n" % (s, v))
        f.write("\n\n")
with open(out + "/throughput.gp", "w") as f:
    f.write('set terminal pngcairo size 800,500 noenhanced\nset output "%s/throughput.png"\n' % out)
    f.write('set title "Total decode throughput vs concurrent sequences"\n')
    f.write('set xlabel "sequences decoded together"\nset ylabel "tokens/s (all sequences)"\n')
    f.write('set key left top\nset grid\nset xtics (1, 4, 8)\n')
    f.write("plot " + ", ".join('"%s/throughput.dat" index %d with linespoints lw 2 title "%s"'
                                % (out, i, fmt) for i, fmt in enumerate(plot)) + "\n")
PY
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot "$out/throughput.gp" && echo "plot: $out/throughput.png"
else
    echo "gnuplot not installed (make deps): no plot"
fi
