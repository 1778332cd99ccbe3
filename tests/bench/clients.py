#!/usr/bin/env python3
"""clients.py - N concurrent streaming clients against a running nginx.

Each client sends a 200-token prompt (token ids, so no tokenizer or template
cost differs from the llama.cpp server test) to /v1/completions and streams
200 generated tokens (temperature 0, ignore_eos), as in the published
Ollama test. Prints one JSON line: mean/max time to first token, mean/max
end to end, and the total tokens/s over the wall time of all clients.

usage: clients.py PORT CLIENTS [PROMPT_TOKENS] [GEN_TOKENS] [TOKENIZER_JSON] [SALT]
Prompts differ per client and per SALT (default 0): runs meant to prefill
afresh take different salts (the same salt on another server is the same work).
With TOKENIZER_JSON the tokens whose bytes are not valid UTF-8 alone are banned
through logit_bias (as workload.py does): llama-server ends a stream whose
text stops being valid UTF-8, which random-weight models reach quickly; send
it to both servers so they do the same work.
"""
import json
import sys

import sse


def client(port, ids, n_gen, out, i, bias):
    body = {"model": "qwen3", "prompt": ids, "max_tokens": n_gen, "temperature": 0,
            "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
    if bias:
        body["logit_bias"] = bias
    ttft, e2e, usage = sse.stream(port, body)
    # the server's own count, from the closing usage chunk
    out[i] = (ttft, e2e, usage["completion_tokens"])


def prompt(n_prompt, j, salt):
    """client j's prompt token ids: distinct per client and per salt, from
    the first token on, so no request can reuse an earlier one's prefill
    (our prefix cache, llama-server's slot cache)"""
    return [(1000 + 7919 * k + 13 * j + 101 * salt) % 150000 for k in range(n_prompt)]


def measure(port, n, n_prompt=200, n_gen=200, bias=None, salt=0):
    """n clients at once; the JSON row's fields as a dict"""
    out = [None] * n
    wall = sse.run_all([
        (lambda j=j: client(port, prompt(n_prompt, j, salt), n_gen, out, j, bias))
        for j in range(n)])
    if any(r is None for r in out):
        raise SystemExit("a client failed")
    tokens = sum(r[2] for r in out)
    return {"clients": n, "prompt": n_prompt, "gen": n_gen,
            "ttft_s": sum(r[0] for r in out) / n, "ttft_max_s": max(r[0] for r in out),
            "e2e_s": sum(r[1] for r in out) / n, "e2e_max_s": max(r[1] for r in out),
            "tokens": tokens, "wall_s": wall, "total_tok_s": tokens / wall}


def banned(tokenizer_json):
    """logit_bias banning the byte-fragment tokens (see the usage)"""
    import workload
    return [[t, False] for t in workload.byte_fragment_ids(tokenizer_json)]


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    n_prompt = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    n_gen = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    bias = banned(sys.argv[5]) if len(sys.argv) > 5 else None
    salt = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    print(json.dumps(measure(port, n, n_prompt, n_gen, bias, salt)))


if __name__ == "__main__":
    main()
