#!/usr/bin/env python3
"""workload.py - our users' typical requests against a running server.

extract: a ~300-token document of customer records and a JSON schema whose
answer copies one record's fields from it (names, account numbers, cities
as enums of the document's values), greedy, one request at a time, with
the server's n-gram drafts (the default) and with "draft": "off": decode
tokens/s of each and whether the answers are the same. A random-weight
model does not copy by itself: the schema makes the answer a copy, and a
logit bias of +30 on the tokens of the prompt's example answer (from the
server's /tokenize) with whitespace-only tokens banned makes it the same
tokens the prompt spells it with, as a trained model's copy would be. So
this measures what drafts give an answer that copies its prompt, not how
often a real model copies.

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
       workload.py PORT extract [--requests N] [--tokenizer tokenizer.json] [--seed N]
"""
import argparse
import json
import random
import threading
import urllib.request

import sse


def token_bytes(path):
    """Each token id's bytes (byte-level BPE decoded), from tokenizer.json."""
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
    out = {}
    for tok, i in vocab.items():
        try:
            out[i] = bytes(to_byte[ch] for ch in tok)
        except KeyError:
            pass
    return out


def byte_fragment_ids(path):
    """Ids whose byte-level token is not valid UTF-8 on its own."""
    bad = []
    for i, b in token_bytes(path).items():
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
    return bad


def whitespace_ids(path):
    """Ids whose token is only whitespace."""
    return [i for i, b in token_bytes(path).items() if b and not b.strip()]


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

    wall = sse.run_all([client] * args.clients)
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


FIRST = ["Alexander", "Beatrice", "Chandra", "Dmitri", "Eleonora", "Farouk", "Giulia",
         "Hiroshi", "Ingrid", "Jaroslav", "Katarzyna", "Leopold"]
LAST = ["Hamilton", "Okonkwo", "Vasquez", "Lindqvist", "Papadopoulos", "Nakamura",
        "Fitzgerald", "Castellano", "Brennan", "Oyelaran", "Whitmore", "Kowalczyk"]
CITIES = ["Rotterdam", "Valparaiso", "Thessaloniki", "Winnipeg", "Marrakesh", "Ljubljana",
          "Brisbane", "Guadalajara", "Tallinn", "Hyderabad", "Cartagena", "Trondheim"]


def extract(args):
    rng = random.Random(args.seed)
    # a random model fills the whitespace JSON allows between tokens;
    # banned, the answer is the compact copy a trained model would write
    bias = [[i, False] for i in whitespace_ids(args.tokenizer)] if args.tokenizer else None
    results = {"on": [], "off": []}
    same = True
    for i in range(args.requests):
        people = [("%s %s" % (rng.choice(FIRST), rng.choice(LAST)),
                   "%d-%04d-%04d" % (rng.randrange(100, 999), rng.randrange(10000),
                                     rng.randrange(10000)),
                   rng.choice(CITIES)) for _ in range(8)]
        doc = "\n".join("Record %d. Customer: %s. Account number: %s. City: %s. Status: "
                        "active since %d." % (k + 1, n, a, c, 2000 + rng.randrange(24))
                        for k, (n, a, c) in enumerate(people))
        pick = rng.randrange(len(people))
        schema = {"type": "object", "additionalProperties": False,
                  "required": ["customer", "account_number", "city"],
                  "properties": {
                      "customer": {"type": "string", "enum": [people[pick][0]]},
                      "account_number": {"type": "string", "enum": [people[pick][1]]},
                      "city": {"type": "string", "enum": [people[pick][2]]}}}
        example = '{"customer":"%s","account_number":"%s","city":"%s"}' % people[pick]
        msg = ("%s\n\nExtract record %d as JSON, for example %s" % (doc, pick + 1, example))
        req = urllib.request.Request("http://127.0.0.1:%d/tokenize" % args.port,
                                     data=json.dumps({"prompt": example}).encode())
        copy_ids = json.load(urllib.request.urlopen(req))["tokens"]
        texts = {}
        for mode in ("on", "off"):
            body = {"model": "qwen3", "messages": [{"role": "user", "content": msg}],
                    "temperature": 0, "max_tokens": 160, "stream": True,
                    "stream_options": {"include_usage": True}, "reasoning_effort": "none",
                    "response_format": {"type": "json_schema",
                                        "json_schema": {"name": "record", "schema": schema}}}
            if mode == "off":
                body["draft"] = "off"
            body["logit_bias"] = (bias or []) + [[t, 30] for t in set(copy_ids)]
            ttft, e2e, usage = sse.stream(args.port, body, "/v1/chat/completions")
            texts[mode] = sse.stream.text
            n = usage.get("completion_tokens", 0)
            results[mode].append((n, e2e - ttft))
        same = same and texts["on"] == texts["off"]
    out = {"workload": "extract", "requests": args.requests, "same_text": same}
    for mode in ("on", "off"):
        toks = sum(r[0] - 1 for r in results[mode])
        secs = sum(r[1] for r in results[mode])
        out["decode_tok_s_drafts_" + mode] = toks / secs if secs > 0 else 0.0
        out["tokens_drafts_" + mode] = sum(r[0] for r in results[mode])
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("workload", choices=["classify", "extract"])
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--shared", type=int, default=600)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--tokenizer")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.workload == "extract":
        extract(args)
        return
    bias = [[i, False] for i in byte_fragment_ids(args.tokenizer)] if args.tokenizer else None
    classify(args, bias)


if __name__ == "__main__":
    main()
