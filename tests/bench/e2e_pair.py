#!/usr/bin/env python3
"""e2e_pair.py - end to end through our nginx against llama-server, alternating.

Each round runs clients.py's test (streamed /v1/completions, PROMPT + GEN
tokens a client) with 1 client, then with 4, on our server and then on
llama-server, the same prompts on both. Every run's prompts are new (their
own salt): a run never finds an earlier run's prompt in our prefix cache or
in a llama-server slot, so each prefills its prompts whole, as the published
test's requests do. Prints a JSON line per run (kind "nginx" for ours,
"peer_clients" for llama-server, with the round) and, with a peer, one
"e2e_pair" line per client count: the medians of the per-round ratios of
mean end-to-end time (ours / llama-server: the 1-client goal is at most 0.6)
and of total tokens/s (the 4-client goal is at least 2).

usage: e2e_pair.py OUR_PORT PEER_PORT ROUNDS [PROMPT] [GEN] [TOKENIZER_JSON]
PEER_PORT 0: ours alone (no ratios).
"""
import json
import statistics
import sys

import clients


def main():
    port, lport, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    n_prompt = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    n_gen = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    bias = clients.banned(sys.argv[6]) if len(sys.argv) > 6 else None
    if rounds < 1:
        raise SystemExit("e2e_pair: ROUNDS must be at least 1")
    servers = [("nginx", port)] + ([("peer_clients", lport)] if lport else [])
    runs = {}
    salt = 1     # 0 is clients.py's default: a stray earlier run of it
    for r in range(rounds):
        for n in (1, 4):
            for kind, p in list(servers):
                try:
                    row = clients.measure(p, n, n_prompt, n_gen, bias, salt)
                except (SystemExit, OSError) as e:
                    if kind == "nginx":
                        raise
                    # llama-server's failure ends the comparison, not ours
                    print("e2e_pair: llama-server failed (%s); ours alone from here" % e,
                          file=sys.stderr)
                    servers.remove((kind, p))
                    lport = 0
                    continue
                row = dict({"kind": kind, "round": r + 1}, **row)
                print(json.dumps(row), flush=True)
                runs.setdefault((kind, n), []).append(row)
            salt += 1
    if not lport:
        return
    for n in (1, 4):
        ours, peer = runs[("nginx", n)], runs[("peer_clients", n)]
        print(json.dumps({
            "kind": "e2e_pair", "clients": n, "rounds": rounds, "prompt": n_prompt, "gen": n_gen,
            "e2e_ratio": round(statistics.median(a["e2e_s"] / b["e2e_s"]
                                                 for a, b in zip(ours, peer)), 3),
            "tok_s_ratio": round(statistics.median(a["total_tok_s"] / b["total_tok_s"]
                                                   for a, b in zip(ours, peer)), 3)}),
            flush=True)


if __name__ == "__main__":
    main()
