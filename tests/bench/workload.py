#!/usr/bin/env python3
"""workload.py - our users' typical requests against a running server.

classify: a shared instruction of SHARED tokens plus a different ticket of
30-60 tokens per request, answers of at most 8 tokens, REQUESTS requests
from CLIENTS concurrent clients (each sends its next request when the last
one is answered). Prints one JSON line: requests/s over the whole run and
time to first token p50/p95, plus the cached prompt tokens the server
reported (OpenAI usage.prompt_tokens_details.cached_tokens).

Prompts are token-id arrays on /v1/completions, so the same bytes go to our
server and to llama-server (../shared/peer); with --tokenizer the token ids
whose bytes are not valid UTF-8 alone are banned through logit_bias, as
llama-server aborts a request whose text stops being valid UTF-8 (random
weights reach that quickly), and the same bias goes to both servers.

usage: workload.py PORT classify [--requests N] [--clients N] [--shared N]
                   [--max-tokens N] [--tokenizer tokenizer.json] [--seed N]
"""
import argparse
import json
import random
import threading
import time

import sse


def byte_fragment_ids(path):
    """Ids whose byte-level token is not valid UTF-8 on its own."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) \
        + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    to_byte = {chr(c): b for b, c in zip(bs, cs)}
    vocab = json.load(open(path, encoding="utf-8"))["model"]["vocab"]
    bad = []
    for tok, i in vocab.items():
        try:
            bytes(to_byte[ch] for ch in tok).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            bad.append(i)
    return bad


def post(port, body):
    ttft, e2e, usage = sse.stream(port, body)
    return ttft, e2e, (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)


def classify(args, bias):
    rng = random.Random(args.seed)
    shared = [rng.randrange(1000, 150000) for _ in range(args.shared)]
    tickets = [[rng.randrange(1000, 150000) for _ in range(rng.randint(30, 60))]
               for _ in range(args.requests)]
    results = [None] * args.requests
    next_i = [0]
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= args.requests:
                return
            body = {"model": "qwen3", "prompt": shared + tickets[i],
                    "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
                    "ignore_eos": True, "cache_prompt": True,
                    "stream_options": {"include_usage": True}}
            if bias:
                body["logit_bias"] = bias
            results[i] = post(args.port, body)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    if any(r is None for r in results):
        raise SystemExit("a request failed")
    ttft = sorted(r[0] for r in results)
    pct = lambda p: ttft[min(len(ttft) - 1, int(p * len(ttft)))]
    print(json.dumps({"workload": "classify", "requests": args.requests,
                      "clients": args.clients, "shared": args.shared,
                      "max_tokens": args.max_tokens, "wall_s": wall,
                      "req_s": args.requests / wall, "ttft_p50_s": pct(0.50),
                      "ttft_p95_s": pct(0.95),
                      "cached_tokens": sum(r[2] for r in results)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("workload", choices=["classify"])
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--shared", type=int, default=600)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--tokenizer")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    bias = [[i, False] for i in byte_fragment_ids(args.tokenizer)] if args.tokenizer else None
    classify(args, bias)


if __name__ == "__main__":
    main()
