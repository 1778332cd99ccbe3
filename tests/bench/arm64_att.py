#!/usr/bin/env python3
"""arm64_att.py - make bench-arm64-att: the instructions one attention call
executes on arm64 (tests/bench/att_count.c under qemu-aarch64 with the
insn_count plugin), per call and per multiply-add, for a decoded token and
a prompt's call of QWEN_KV_ATT_TOKENS tokens, at a short context and at our
users' depth. By difference of two call counts (40 and 20), so the setup
cancels; seconds of qemu where make bench-arm64 at -d 700 takes an hour.

  arm64_att.py --att-count BIN --plugin P [--qemu Q] [--cpus "CPU=TABLE ..."]
               [--positions "48 732"] [--out DIR]

Multiply-adds of a call: q.K and p.V, 2 heads x 128 dimensions, over the
positions each token sees (a prompt call's tokens see n_pos - 3 .. n_pos).
Writes OUT/arm64_att.md (also printed).
"""
import argparse
import os
import sys

from arm64_insn import count

HEADS, HD, TOKENS = 2, 128, 4
CALLS = (40, 20)


def macs(mode, n_pos):
    if mode == "decode":
        return 2 * HEADS * HD * n_pos
    return sum(2 * HEADS * HD * (n_pos - TOKENS + 1 + j) for j in range(TOKENS))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--att-count", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--qemu", default="qemu-aarch64")
    ap.add_argument("--cpus", default="neoverse-n1=neon_dotprod max,sve256=on=neon_i8mm")
    ap.add_argument("--positions", default="48 732")
    ap.add_argument("--out", default="build/bench")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    with open(os.path.join(a.out, "arm64_att.log"), "w") as log:
        for spec in a.cpus.split():
            cpu, table = spec.rsplit("=", 1)
            for mode in ("decode", "prompt"):
                for n_pos in (int(x) for x in a.positions.split()):
                    c = [count(a.qemu, a.plugin, cpu,
                               [a.att_count, table, mode, str(n_pos), str(n)], log)["total"]
                         for n in CALLS]
                    per = (c[0] - c[1]) / (CALLS[0] - CALLS[1])
                    rows.append((cpu, table, mode, n_pos, per, per / macs(mode, n_pos)))
                    print("== %s %s %s %d: %.0f instructions a call" % (cpu, table, mode, n_pos,
                                                                         per),
                          file=sys.stderr, flush=True)
    out = ["arm64 attention, one (layer, KV head) call of Qwen3-0.6B's shape over an f16 cache "
           "(att_count under qemu-aarch64 + insn_count; by difference of %d and %d calls)"
           % CALLS, "",
           "| CPU model | table | call | positions | instructions a call | a multiply-add |",
           "|---|---|---|---:|---:|---:|"]
    for cpu, table, mode, n_pos, per, pm in rows:
        out.append("| %s | %s | %s | %d | %.0f | %.3f |" % (
            cpu, table, "decode (1 token)" if mode == "decode" else
            "prompt (%d tokens)" % TOKENS, n_pos, per, pm))
    text = "\n".join(out) + "\n"
    with open(os.path.join(a.out, "arm64_att.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
