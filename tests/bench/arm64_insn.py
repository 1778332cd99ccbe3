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

  qwen bench -m M -t 1 --json --no-warmup -p 16 -n 12 | -p 16 -n 4 | -p 64 -n 0 | -p 32 -n 0
    (no untimed warm-up prompt, as llama-bench's --no-warmup: it would be
    fed twice and double the prefill difference; the prompt is fed as one batch; each decode step takes an argmax of the
    logits, which llama-bench does not: 0.2-0.9M instructions a token, the
    second pass stopping at the winner)
  llama-bench -m M -t 1 -r 1 --no-warmup -p 0 -n 0 -pg 16,12 | -pg 16,4
                                        | -p 64 -n 0 | -p 32 -n 0

--depth D puts D tokens in context before each run's prompt (-d D in both
programs: our users' requests come after a ~700-token instruction, where
attention is a large part of a token); the depth's own prefill is the same
in both runs of a difference and cancels. --phases picks decode, prefill or
both (each qemu run at -d 700 takes ~10 minutes). Files then end in _dD.

Writes OUT/arm64.jsonl (a line of what was measured, then one line per run:
the raw counts), OUT/arm64.log (the programs' output) and OUT/arm64.md (the
tables, also printed; --render JSONL prints them again without running). 16 runs of qemu per CPU model and format pair
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


def qwen_args(qwen, model, p, n, seqs=1, depth=0):
    return [qwen, "bench", "-m", model, "-t", "1", "--json", "--no-warmup", "-p", str(p), "-n",
            str(n)] + (["-s", str(seqs)] if seqs > 1 else []) + (["-d", str(depth)] if depth else [])


def peer_args(peer, model, p, n, depth=0):
    base = [peer, "-m", model, "-t", "1", "-r", "1", "--no-warmup"] + (
        ["-d", str(depth)] if depth else [])
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
    # one packing thread: the pool's waiting spins by the clock, which
    # would make the counts differ from run to run
    env = dict(os.environ, QWEN_PACK_THREADS="1")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
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
    # a class both programs barely use (prints as 0.0) or a difference
    # below zero (setup that shrinks with the prompt) has no meaningful ratio
    if a is None or b is None or a < 0.05e6 or b < 0.05e6:
        return "-"
    return "%.2f" % (a / b)


def git(*args):
    return subprocess.run(["git"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True).stdout.strip()


def render(meta, runs):
    """The tables, from the meta line and the runs' raw counts."""
    cpus = meta["cpus"]
    formats = meta["formats"]
    got = {(r["cpu"], r["format"], r["prog"], r["prompt"], r["gen"]): r for r in runs}
    phases = meta.get("phases", list(PHASES))
    depth = meta.get("depth", 0)

    def per(cpu, f, phase, prog):
        hi, lo, ntok = PHASES[phase]
        a, b = got.get((cpu, f, prog) + hi), got.get((cpu, f, prog) + lo)
        if a is None or b is None:
            return None
        return {k: (a[k] - b[k]) / ntok for k in ["total"] + CLASSES}

    minutes = sum(r["seconds"] for r in runs) / 60
    out = []
    out.append("arm64 instructions per token (M = 10^6), 1 thread, qemu-aarch64 + insn_count "
               "plugin%s; commit %s (engine/, tools/, Makefile as of %s%s), %s, %s; %.0f min "
               "of qemu runs" % (
                   (", after %d tokens already in context (-d %d in both programs)" % (depth, depth))
                   if depth else "",
                   meta["commit"], meta["code"], ", modified" if meta["dirty"] else "",
                   meta["date"], meta["qemu"], minutes))
    out.append("")
    out.append("| CPU model (qemu -cpu) | format | per token | ours | llama.cpp | ours / llama.cpp |")
    out.append("|---|---|---|---:|---:|---:|")
    for cpu, build in cpus:
        for f in formats:
            for phase in phases:
                o, l = per(cpu, f, phase, "qwen"), per(cpu, f, phase, "llama.cpp")
                out.append("| %s | %s | %s | %sM | %s | %s |" % (
                    cpu, f.upper(), phase, fmt_m(o["total"]),
                    fmt_m(l["total"]) + "M" if l else "-",
                    fmt_ratio(o["total"], l["total"] if l else None)))
    out.append("")
    out.append("Per instruction class (M per token; dot = SDOT/UDOT/USDOT/SUDOT, mmla = SMMLA/UMMLA/"
               "USMMLA, bf16 = BFDOT/BFMMLA/BFMLAL, sve = any SVE, simd = other FP/Advanced SIMD, "
               "vldst = FP/SIMD loads and stores, ldst = general-register loads and stores, "
               "branch = branches and system, int = integer data processing):")
    out.append("")
    out.append("| CPU model | format | per token | program | total | " + " | ".join(CLASSES) + " |")
    out.append("|---|---|---|---|" + "---:|" * (1 + len(CLASSES)))
    keys = ["total"] + CLASSES
    for cpu, build in cpus:
        for f in formats:
            for phase in phases:
                o, l = per(cpu, f, phase, "qwen"), per(cpu, f, phase, "llama.cpp")
                out.append("| %s | %s | %s | ours | %s |" % (
                    cpu, f.upper(), phase, " | ".join(fmt_m(o[k]) for k in keys)))
                if l:
                    out.append("| | | | llama-bench-%s | %s |" % (
                        build, " | ".join(fmt_m(l[k]) for k in keys)))
                    out.append("| | | | ratio | %s |" % " | ".join(fmt_ratio(o[k], l[k]) for k in keys))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qwen")
    ap.add_argument("--qemu", default="qemu-aarch64")
    ap.add_argument("--plugin")
    ap.add_argument("--peer", default="../shared/peer/arm64")
    ap.add_argument("--models")
    ap.add_argument("--formats", default="q4_k_m q8_0")
    ap.add_argument("--cpus", default="neoverse-n1=dotprod max,sve256=on=i8mm",
                    help="CPU=PEERBUILD ...: qemu -cpu model and llama-bench-PEERBUILD to run on it")
    ap.add_argument("--depth", type=int, default=0,
                    help="tokens already in context before every run's prompt (-d in both "
                         "programs): our users' requests come after a ~700-token instruction")
    ap.add_argument("--phases", default="decode prefill",
                    help="which per-token counts: decode, prefill or both")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--render", metavar="JSONL",
                    help="no runs: the tables again from an earlier run's arm64.jsonl")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    if a.render:
        lines = [json.loads(x) for x in open(a.render) if x.strip()]
        meta = [x for x in lines if x.get("kind") == "meta"][0]
        runs = [x for x in lines if x.get("kind") == "run"]
    else:
        if not (a.qwen and a.plugin and a.models):
            ap.error("--qwen, --plugin and --models are required (or --render)")
        meta, runs = measure(a)
    text = render(meta, runs)
    with open(os.path.join(a.out, name(meta.get("depth", 0), "md")), "w") as fh:
        fh.write(text)
    print(text)


def name(depth, ext):
    """arm64.EXT, or arm64_dDEPTH.EXT for counts after DEPTH tokens"""
    return "arm64%s.%s" % ("_d%d" % depth if depth else "", ext)


def measure(a):
    cpus = [s.rsplit("=", 1) for s in a.cpus.split()]
    phases = a.phases.split()
    for ph in phases:
        if ph not in PHASES:
            sys.exit("arm64_insn: no phase %s (decode, prefill)" % ph)
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

    meta = {"kind": "meta", "commit": git("rev-parse", "--short", "HEAD") or "?",
            "code": git("log", "-1", "--format=%h", "--", "engine", "tools", "Makefile") or "?",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--",
                              "engine", "tools", "Makefile")),
            "date": datetime.date.today().isoformat(),
            "qemu": subprocess.run([a.qemu, "--version"], stdout=subprocess.PIPE,
                                   text=True).stdout.split("\n")[0],
            "cpus": cpus, "formats": formats, "phases": phases, "depth": a.depth}
    runs = []
    raw = open(os.path.join(a.out, name(a.depth, "jsonl")), "w")
    raw.write(json.dumps(meta) + "\n")
    log = open(os.path.join(a.out, name(a.depth, "log")), "w")
    for cpu, build in cpus:
        for f in formats:
            model = os.path.join(a.models, "full-%s.gguf" % f)
            progs = [("qwen", lambda p, n: qwen_args(a.qwen, model, p, n, depth=a.depth))]
            if cpu in peers:
                progs.append(("llama.cpp", lambda p, n, x=peers[cpu]: peer_args(x, model, p, n,
                                                                                depth=a.depth)))
            for phase in phases:
                hi, lo, ntok = PHASES[phase]
                for prog, mk in progs:
                    for p, n in (hi, lo):
                        print("== arm64 %s %s %s: %s -p %d -n %d" % (cpu, f, phase, prog, p, n),
                              file=sys.stderr, flush=True)
                        c = count(a.qemu, a.plugin, cpu, mk(p, n), log)
                        print("   %sM instructions, %.0f s" % (fmt_m(c["total"]), c["seconds"]),
                              file=sys.stderr, flush=True)
                        r = {"kind": "run", "cpu": cpu, "format": f, "prog": prog,
                             "prompt": p, "gen": n, **c}
                        raw.write(json.dumps(r) + "\n")
                        raw.flush()
                        runs.append(r)
    raw.close()
    log.close()
    return meta, runs


if __name__ == "__main__":
    main()
