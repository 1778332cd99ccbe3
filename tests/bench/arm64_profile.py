#!/usr/bin/env python3
"""arm64_profile.py - make bench-arm64-profile: where our arm64 instructions
per token go, function by function, under qemu-aarch64 with the arm64_prof
TCG plugin (tests/bench/arm64_prof.c).

The same runs and differences as arm64_insn.py (prefill = (count at prompt
64 - count at prompt 32) / 32; decode = (prompt 16 + 12 generated - prompt
16 + 4) / 8), one thread, but the counts kept per translated block and the
blocks mapped to the functions of the static binary holding them (nm);
inlined kernels count in the function they were inlined into. The total
is arm64_insn.py's for the same model and CPU.

  arm64_profile.py --qwen Q --plugin P --model M [--cpu neoverse-n1]
                   [--phase prefill|decode] [--seqs 1] [--nm NM] [--top 25] [--out DIR]

--seqs S runs S sequences side by side (qwen bench -s S): a decode step is
then S tokens, as when a server decodes S requests together, and the
counts are per token of one sequence's share (divided by S too).

Prints the table and writes it to OUT/arm64_profile.md.
"""
import argparse
import bisect
import os
import subprocess
import sys
import tempfile

from arm64_insn import PHASES, qwen_args


def symbols(nm, binary):
    """(addresses, ends, names) of the binary's code symbols, by address;
    an end is None where nm gives no size"""
    r = subprocess.run([nm, "-n", "-S", "--defined-only", binary], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("arm64_profile: %s failed: %s" % (nm, r.stderr.strip()))
    addrs, ends, names = [], [], []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            addrs.append(int(parts[0], 16))
            ends.append(int(parts[0], 16) + int(parts[1], 16))
            names.append(parts[3])
        elif len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            ends.append(None)
            names.append(parts[2])
    return addrs, ends, names


def blocks(qemu, plugin, cpu, argv):
    """{block address: instructions} of one run under qemu"""
    fd, path = tempfile.mkstemp(prefix="prof_", suffix=".txt")
    os.close(fd)
    cmd = [qemu, "-cpu", cpu, "-plugin", "%s,out=%s" % (os.path.abspath(plugin), path)] + argv
    # one packing thread, as arm64_insn.py: the counts are then the same every run
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=dict(os.environ, QWEN_PACK_THREADS="1"))
    try:
        lines = open(path).read().split("\n")
    finally:
        os.unlink(path)
    if r.returncode != 0 or not lines[0]:
        sys.exit("arm64_profile: failed (exit %d): %s\n%s" % (r.returncode, " ".join(cmd),
                                                              r.stdout[-2000:]))
    return {int(a, 16): int(n) for a, n in (x.split() for x in lines if x)}


def by_function(counts, syms):
    """counts summed by the function holding each block: code outside every
    sized symbol (PLT stubs, say) as "(no symbol)" """
    addrs, ends, names = syms
    out = {}
    for a, n in counts.items():
        i = bisect.bisect_right(addrs, a) - 1
        inside = i >= 0 and (ends[i] is None or a < ends[i])
        name = names[i] if inside else "(no symbol)"
        out[name] = out.get(name, 0) + n
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qwen", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--qemu", default="qemu-aarch64")
    ap.add_argument("--cpu", default="neoverse-n1")
    ap.add_argument("--phase", default="prefill", choices=sorted(PHASES))
    ap.add_argument("--seqs", type=int, default=1)
    ap.add_argument("--nm", default="aarch64-linux-gnu-nm")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default="build/bench")
    a = ap.parse_args()

    syms = symbols(a.nm, a.qwen)
    hi, lo, ntok = PHASES[a.phase]
    if a.seqs < 1:
        sys.exit("arm64_profile: --seqs must be at least 1")
    runs = [by_function(blocks(a.qemu, a.plugin, a.cpu,
                               qwen_args(a.qwen, a.model, p, n, a.seqs)), syms)
            for p, n in (hi, lo)]
    ntok *= a.seqs
    per = {f: (runs[0].get(f, 0) - runs[1].get(f, 0)) / ntok for f in set(runs[0]) | set(runs[1])}
    total = sum(per.values())
    rows = sorted(per.items(), key=lambda kv: -abs(kv[1]))
    text = ["arm64 instructions per %s token by function (M = 10^6), %s, -cpu %s, 1 thread%s; "
            "total %.1fM" % ("prefilled" if a.phase == "prefill" else "decoded",
                             os.path.basename(a.model), a.cpu,
                             ", %d sequences" % a.seqs if a.seqs > 1 else "", total / 1e6), "",
            "| function | M per token | share |", "|---|---:|---:|"]
    shown = 0.0
    for f, v in rows[:a.top]:
        text.append("| %s | %.2f | %.1f%% |" % (f, v / 1e6, 100 * v / total if total else 0))
        shown += v
    text.append("| (the other %d functions) | %.2f | %.1f%% |"
                % (max(len(rows) - a.top, 0), (total - shown) / 1e6,
                   100 * (total - shown) / total if total else 0))
    text = "\n".join(text) + "\n"
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "arm64_profile.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
