#!/usr/bin/env python3
"""ttft.py - time to first token against prompt length, through a running
nginx: for each length, one prompt of that many token ids (its own ids, so
no length shares a prefix with another) is sent twice to /v1/completions,
streamed, 4 generated tokens, greedy. The first send prefills the whole
prompt; the second finds it in the prefix cache when the cache is on
(qwen_prefix_cache), so its time to first token is the cache's gain.
Prints one JSON line per length: prompt, ttft of both sends, and the
cached prompt tokens of the second (the usage's cached_tokens).

usage: ttft.py PORT [LENGTH...]        (default 100 400 1600)
"""
import json
import sys

import sse


def prompt(n):
    # ordinary vocabulary ids, a different run for every length
    return [(1000 + 7919 * k + 104729 * n) % 150000 for k in range(n)]


def main():
    port = int(sys.argv[1])
    lengths = [int(a) for a in sys.argv[2:]] or [100, 400, 1600]
    for n in lengths:
        ids = prompt(n)
        body = {"model": "qwen3", "prompt": ids, "max_tokens": 4, "temperature": 0,
                "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
        first, _, u1 = sse.stream(port, body)
        second, _, u2 = sse.stream(port, body)
        cached = (u2.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        print(json.dumps({"prompt": n, "prompt_tokens": u1.get("prompt_tokens", n),
                          "ttft_first_s": first, "ttft_second_s": second,
                          "cached_tokens": cached}), flush=True)


if __name__ == "__main__":
    main()
