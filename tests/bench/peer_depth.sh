#!/usr/bin/env bash
# peer_depth.sh - decode against llama.cpp at the same positions. Our `qwen bench -p P -n N`
# decodes positions P .. P + N - 1, after its prompt; llama-bench's tg test (what
# ../shared/peer/compare.sh reads) decodes positions 0 .. N - 1 of an empty context, whose
# attention reads fewer cached rows. llama-bench -d P fills the context to depth P (untimed)
# first, so its tokens attend over what ours do. The two run alternately, ROUNDS times per
# case; the median ratio ours/llama.cpp is printed, per kernel table against llama.cpp's
# matching CPU variant (as compare.sh pairs them).
# -P PROMPT measures a prompt's prefill after DEPTH tokens instead (our users' typical request: a
# short ticket after a ~700-token instruction): `qwen bench -d DEPTH -p PROMPT` against
# `llama-bench -d DEPTH -p PROMPT -n 0`, both timing only the PROMPT tokens.
#
#   tests/bench/peer_depth.sh [-r ROUNDS] [-t THREADS] [-p DEPTH] [-n GEN] [-P PROMPT] [-k TABLE] MODEL.gguf...
#
# Prints one line per case and a JSON line per case.
set -euo pipefail
peer=${PEER_DIR:-../shared/peer}
rounds=3 threads=2 depth=200 ng=200 np=0 tables=""
while getopts "r:t:p:n:P:k:" o; do
  case $o in r) rounds=$OPTARG;; t) threads=$OPTARG;; p) depth=$OPTARG;; n) ng=$OPTARG;; P) np=$OPTARG;;
             k) tables="$tables $OPTARG";; *) exit 2;; esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: peer_depth.sh [-r R] [-t T] [-p DEPTH] [-n GEN] [-P PROMPT] [-k TABLE] MODEL.gguf..." >&2; exit 2; }
qwen=${QWEN:-build/qwen}
[ -x "$qwen" ] || { echo "peer_depth.sh: $qwen not found: run make first" >&2; exit 2; }
[ -x "$peer/x86/llama-bench" ] || { echo "peer_depth.sh: no $peer/x86/llama-bench" >&2; exit 2; }
for m in "$@"; do [ -f "$m" ] || { echo "peer_depth.sh: no $m (make bench-models)" >&2; exit 2; }; done
flags=$(grep -m1 '^flags' /proc/cpuinfo)
if [ -z "$tables" ]; then
  tables=avx2
  case "$flags" in *avx512f*avx512bw*avx512vl*avx512_vnni*) tables="avx2 avx512";; esac
  # AVX-512 without BF16 (Cascade Lake, Ice Lake): our avx512_vnni table
  case " $flags " in *" avx512_bf16 "*) ;; *) tables=${tables/avx512/avx512_vnni};; esac
  case " $flags " in *" avx_vnni "*) tables="$tables avx2_vnni";; esac
fi
# the llama.cpp folder per table: its AVX2 build, its best build here, its AVX-VNNI build
dirs=""
for table in $tables; do
  case $table in
    avx2) d=$("$peer/avx2.sh");;
    avx2_vnni) d=$(tests/bench/peer_variant.sh alderlake)/x86;;
    *) d=$peer/x86;;
  esac
  dirs="$dirs $table=$d"
done

python3 - "$qwen" "$rounds" "$threads" "$depth" "$ng" "$np" "$dirs" "$@" <<'PY'
import json, statistics, subprocess, sys
qwen, rounds, threads, depth, ng, np_, dirs = sys.argv[1:8]
models = sys.argv[8:]
rounds = int(rounds)
prefill = int(np_) > 0
dirs = dict(x.split("=", 1) for x in dirs.split())

def ours(table, m):
    args = ["-p", np_, "-d", depth, "-n", "1"] if prefill else ["-p", depth, "-n", ng]
    r = subprocess.run([qwen, "bench", "-m", m, *args, "-t", threads, "--kernels", table],
                       capture_output=True, text=True, timeout=1800)
    for line in reversed(r.stdout.splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line)["prefill_tok_s" if prefill else "decode_tok_s"]
    raise SystemExit(f"qwen bench --kernels {table} failed: {r.stderr.strip()[-300:]}")

def peer(table, m):
    args = ["-p", np_, "-n", "0"] if prefill else ["-p", "0", "-n", ng]
    r = subprocess.run([dirs[table] + "/llama-bench", "-m", m, *args, "-d", depth,
                        "-t", threads, "-r", "1", "-o", "json"],
                       capture_output=True, text=True, timeout=1800)
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"llama-bench failed: {r.stderr.strip()[-300:]}")
    return next(x["avg_ts"] for x in j if (x["n_prompt"] if prefill else x["n_gen"]) > 0)

for table in dirs:
    for m in models:
        a, b = [], []
        for _ in range(rounds):
            a.append(ours(table, m)); b.append(peer(table, m))
        rd = statistics.median(x / y for x, y in zip(a, b))
        name = m.rsplit("/", 1)[-1]
        what = (f"prefill of {np_} after {depth}" if prefill
                else f"decode at positions {depth}..{int(depth) + int(ng) - 1}")
        print(f"{table:9s} {name:24s} {what}: "
              f"{statistics.median(a):6.1f} vs {statistics.median(b):6.1f} tok/s  x{rd:.2f}",
              flush=True)
        line = {"table": table, "model": name, "threads": int(threads), "rounds": rounds,
                "depth": int(depth)}
        if prefill:
            line.update({"n_prompt": int(np_), "prefill_ratio": round(rd, 3)})
        else:
            line.update({"n_gen": int(ng), "decode_ratio": round(rd, 3)})
        line.update({"ours": a, "llama_cpp": b})
        print(json.dumps(line), flush=True)
PY
