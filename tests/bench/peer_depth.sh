#!/usr/bin/env bash
# peer_depth.sh - decode against llama.cpp at the same positions. Our `qwen bench -p P -n N`
# decodes positions P .. P + N - 1, after its prompt; llama-bench's tg test (what
# ../shared/peer/compare.sh reads) decodes positions 0 .. N - 1 of an empty context, whose
# attention reads fewer cached rows. llama-bench -d P fills the context to depth P (untimed)
# first, so its tokens attend over what ours do. The two run alternately, ROUNDS times per
# case; the median ratio ours/llama.cpp is printed, per kernel table against llama.cpp's
# matching CPU variant (as compare.sh pairs them).
#
#   tests/bench/peer_depth.sh [-r ROUNDS] [-t THREADS] [-p DEPTH] [-n GEN] [-k TABLE] MODEL.gguf...
#
# Prints one line per case and a JSON line per case.
set -euo pipefail
peer=${PEER_DIR:-../shared/peer}
rounds=3 threads=2 depth=200 ng=200 tables=""
while getopts "r:t:p:n:k:" o; do
  case $o in r) rounds=$OPTARG;; t) threads=$OPTARG;; p) depth=$OPTARG;; n) ng=$OPTARG;;
             k) tables="$tables $OPTARG";; *) exit 2;; esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: peer_depth.sh [-r R] [-t T] [-p DEPTH] [-n GEN] [-k TABLE] MODEL.gguf..." >&2; exit 2; }
qwen=${QWEN:-build/qwen}
[ -x "$qwen" ] || { echo "peer_depth.sh: $qwen not found: run make first" >&2; exit 2; }
[ -x "$peer/x86/llama-bench" ] || { echo "peer_depth.sh: no $peer/x86/llama-bench" >&2; exit 2; }
for m in "$@"; do [ -f "$m" ] || { echo "peer_depth.sh: no $m (make bench-models)" >&2; exit 2; }; done
flags=$(grep -m1 '^flags' /proc/cpuinfo)
if [ -z "$tables" ]; then
  tables=avx2
  case "$flags" in *avx512f*avx512bw*avx512vl*avx512_vnni*) tables="avx2 avx512";; esac
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

python3 - "$qwen" "$rounds" "$threads" "$depth" "$ng" "$dirs" "$@" <<'PY'
import json, statistics, subprocess, sys
qwen, rounds, threads, depth, ng, dirs = sys.argv[1:7]
models = sys.argv[7:]
rounds = int(rounds)
dirs = dict(x.split("=", 1) for x in dirs.split())

def ours(table, m):
    r = subprocess.run([qwen, "bench", "-m", m, "-p", depth, "-n", ng, "-t", threads,
                        "--kernels", table], capture_output=True, text=True, timeout=1800)
    for line in reversed(r.stdout.splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line)["decode_tok_s"]
    raise SystemExit(f"qwen bench --kernels {table} failed: {r.stderr.strip()[-300:]}")

def peer(table, m):
    r = subprocess.run([dirs[table] + "/llama-bench", "-m", m, "-p", "0", "-n", ng, "-d", depth,
                        "-t", threads, "-r", "1", "-o", "json"],
                       capture_output=True, text=True, timeout=1800)
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"llama-bench failed: {r.stderr.strip()[-300:]}")
    return next(x["avg_ts"] for x in j if x["n_gen"] > 0)

for table in dirs:
    for m in models:
        a, b = [], []
        for _ in range(rounds):
            a.append(ours(table, m)); b.append(peer(table, m))
        rd = statistics.median(x / y for x, y in zip(a, b))
        name = m.rsplit("/", 1)[-1]
        print(f"{table:9s} {name:24s} decode at positions {depth}..{int(depth) + int(ng) - 1}: "
              f"{statistics.median(a):6.1f} vs {statistics.median(b):6.1f} tok/s  x{rd:.2f}",
              flush=True)
        print(json.dumps({"table": table, "model": name, "threads": int(threads),
                          "rounds": rounds, "depth": int(depth), "n_gen": int(ng),
                          "decode_ratio": round(rd, 3), "ours": a, "llama_cpp": b}), flush=True)
PY
