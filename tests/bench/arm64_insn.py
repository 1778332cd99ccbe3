#!/usr/bin/env python3
"""arm64_insn.py - make bench-arm64: instructions executed per decoded and
per prefilled token on arm64, ours (`qwen bench`) and llama.cpp's
(`llama-bench`), under qemu-aarch64 with the insn_count TCG plugin.

Per-token counts by difference, which removes loading, repacking, the
warm-up step and all setup (../shared/arm64/README.md):
  decode  = (count at prompt 16 + 12 generated - count at prompt 16 + 4) / 8
  prefill = (count at prompt 64 - count at prompt 32) / 32, none generated
Both programs run on one thread (the plugin's inline counters are exact for
one running guest thread), on the same model files.

  qwen bench -m M -t 1 --json -p 16 -n 12 | -p 16 -n 4 | -p 64 -n 0 | -p 32 -n 0
    (one untimed warm-up prompt token first, the same in every run; the
    prompt is fed as one batch; each decode step takes an argmax of the
    logits, which llama-bench does not: ~0.15M instructions a token)
  llama-bench -m M -t 1 -r 1 --no-warmup -p 0 -n 0 -pg 16,12 | -pg 16,4
                                        | -p 64 -n 0 | -p 32 -n 0

Writes OUT/arm64.jsonl (one line per run: the raw counts) and OUT/arm64.md
(the tables, also printed). 16 runs of qemu per CPU model and format pair
at most, one at a time.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time

CLASSES = ["dot", "mmla", "bf16", "sve", "simd", "vldst", "ldst", "branch", "int"]

# phase -> (the two runs as (prompt, generated): more, fewer; tokens between)
PHASES = {
    "decode": ((16, 12), (16, 4), 8),
    "prefill": ((64, 0), (32, 0), 32),
}


def qwen_args(qwen, model, p, n):
    return [qwen, "bench", "-m", model, "-t", "1", "--json", "-p", str(p), "-n", str(n)]


def peer_args(peer, model, p, n):
    base = [peer, "-m", model, "-t", "1", "-r", "1", "--no-warmup"]
    if n:
        return base + ["-p", "0", "-n", "0", "-pg", "%d,%d" % (p, n)]
    return base + ["-p", str(p), "-n", "0"]


def count(qemu, plugin, cpu, argv, log):
    """Run argv under qemu with the plugin; the counts per class."""
    fd, path = tempfile.mkstemp(prefix="insn_", suffix=".txt")
    os.close(fd)
    os.unlink(path)   # the plugin appends: start from no file
    cmd = [qemu, "-cpu", cpu, "-plugin", "%s,out=%s" % (os.path.abspath(plugin), path)] + argv
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    secs = time.time() - t0
    log.write("$ " + " ".join(cmd) + "\n" + r.stdout + "\n")
    log.flush()
    try:
        line = open(path).read().strip().splitlines()[-1]
    except (OSError, IndexError):
        line = ""
    finally:
        if os.path.exists(path):
            os.unlink(path)
    if r.returncode != 0 or not line.startswith("insn_count "):
        sys.exit("arm64_insn: failed (exit %d): %s\n%s" % (r.returncode, " ".join(cmd),
                                                           r.stdout[-2000:]))
    c = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line) if k != "vcpus"}
    c["seconds"] = round(secs, 1)
    return c


def fmt_m(x):
    return "%.1f" % (x / 1e6)


def fmt_ratio(a, b):
    if b is None or a is None:
        return "-"
    if b == 0:
        return "-" if a == 0 else "inf"
    return "%.2f" % (a / b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qwen", required=True)
    ap.add_argument("--qemu", default="qemu-aarch64")
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--peer", default="../shared/peer/arm64")
    ap.add_argument("--models", required=True)
    ap.add_argument("--formats", default="q4_k_m q8_0")
    ap.add_argument("--cpus", default="neoverse-n1=dotprod max,sve256=on=i8mm",
                    help="CPU=PEERBUILD ...: qemu -cpu model and llama-bench-PEERBUILD to run on it")
    ap.add_argument("--out", default="build/bench")
    a = ap.parse_args()

    os.makedirs(a.out, exist_ok=True)
    cpus = [s.rsplit("=", 1) for s in a.cpus.split()]
    formats = a.formats.split()
    for f in formats:
        m = os.path.join(a.models, "full-%s.gguf" % f)
        if not os.path.isfile(m):
            sys.exit("arm64_insn: no %s (make bench-models, or ARM64_BENCH_MODELS=DIR)" % m)
    peers = {}
    for cpu, build in cpus:
        p = os.path.join(a.peer, "llama-bench-" + build)
        if os.access(p, os.X_OK):
            peers[cpu] = p
        else:
            print("== arm64: llama.cpp on %s skipped (no %s)" % (cpu, p), file=sys.stderr)

    started = time.time()
    rows = []   # dicts: cpu, format, phase, prog, runs, per-token counts
    raw = open(os.path.join(a.out, "arm64.jsonl"), "w")
    log = open(os.path.join(a.out, "arm64.log"), "w")
    for cpu, build in cpus:
        for f in formats:
            model = os.path.join(a.models, "full-%s.gguf" % f)
            progs = [("qwen", lambda p, n: qwen_args(a.qwen, model, p, n))]
            if cpu in peers:
                progs.append(("llama.cpp", lambda p, n, x=peers[cpu]: peer_args(x, model, p, n)))
            for phase, (hi, lo, ntok) in PHASES.items():
                for prog, mk in progs:
                    got = {}
                    for p, n in (hi, lo):
                        print("== arm64 %s %s %s: %s -p %d -n %d" % (cpu, f, phase, prog, p, n),
                              file=sys.stderr, flush=True)
                        c = count(a.qemu, a.plugin, cpu, mk(p, n), log)
                        print("   %s instructions, %.0f s" % (fmt_m(c["total"]) + "M", c["seconds"]),
                              file=sys.stderr, flush=True)
                        raw.write(json.dumps({"cpu": cpu, "format": f, "prog": prog,
                                              "prompt": p, "gen": n, **c}) + "\n")
                        raw.flush()
                        got[(p, n)] = c
                    per = {k: (got[hi][k] - got[lo][k]) / ntok for k in ["total"] + CLASSES}
                    rows.append({"cpu": cpu, "format": f, "phase": phase, "prog": prog,
                                 "per": per})
    raw.close()
    log.close()
    minutes = (time.time() - started) / 60

    def find(cpu, f, phase, prog):
        for r in rows:
            if (r["cpu"], r["format"], r["phase"], r["prog"]) == (cpu, f, phase, prog):
                return r["per"]
        return None

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True).stdout.strip() or "?"
    code = subprocess.run(["git", "log", "-1", "--format=%h", "--", "engine", "tools"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "engine", "tools"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    qv = subprocess.run([a.qemu, "--version"], stdout=subprocess.PIPE, text=True).stdout.split("\n")[0]
    out = []
    out.append("arm64 instructions per token (M = 10^6), 1 thread, qemu-aarch64 + insn_count "
               "plugin; commit %s (engine/ and tools/ as of %s%s), %s, %s; %.0f min" %
               (commit, code or "?", ", modified" if dirty else "", datetime.date.today().isoformat(), qv, minutes))
    out.append("")
    out.append("| CPU model (qemu -cpu) | format | per token | ours | llama.cpp | ours / llama.cpp |")
    out.append("|---|---|---|---:|---:|---:|")
    for cpu, build in cpus:
        for f in formats:
            for phase in PHASES:
                o, l = find(cpu, f, phase, "qwen"), find(cpu, f, phase, "llama.cpp")
                out.append("| %s | %s | %s | %sM | %s | %s |" % (
                    cpu, f.upper(), phase, fmt_m(o["total"]),
                    fmt_m(l["total"]) + "M" if l else "-",
                    fmt_ratio(o["total"], l["total"] if l else None)))
    out.append("")
    out.append("Per instruction class (M per token; dot = SDOT/UDOT/USDOT, mmla = SMMLA/UMMLA, "
               "bf16 = BFDOT/BFMMLA, sve = any SVE, simd = other FP/Advanced SIMD, "
               "vldst = FP/SIMD loads and stores, ldst = general-register loads and stores):")
    out.append("")
    out.append("| CPU model | format | per token | program | total | " + " | ".join(CLASSES) + " |")
    out.append("|---|---|---|---|" + "---:|" * (1 + len(CLASSES)))
    for cpu, build in cpus:
        for f in formats:
            for phase in PHASES:
                o, l = find(cpu, f, phase, "qwen"), find(cpu, f, phase, "llama.cpp")
                keys = ["total"] + CLASSES
                out.append("| %s | %s | %s | ours | %s |" % (
                    cpu, f.upper(), phase, " | ".join(fmt_m(o[k]) for k in keys)))
                if l:
                    peer = os.path.basename(peers[cpu])
                    out.append("| | | | %s | %s |" % (peer, " | ".join(fmt_m(l[k]) for k in keys)))
                    out.append("| | | | ratio | %s |" % " | ".join(fmt_ratio(o[k], l[k]) for k in keys))
    text = "\n".join(out) + "\n"
    with open(os.path.join(a.out, "arm64.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
