#!/usr/bin/env python3
"""admission.py - the 429 rate of a multi-worker nginx at a chosen share of
its capacity. Starts nginx (2 workers, the tiny model, qwen_slots S and
qwen_queue Q each: capacity 2 * (S + Q) requests), then runs that share of
the capacity as closed-loop clients for SECONDS: each sends a non-streamed
completion, waits for its answer, and after a 429 waits 0.2 s before the
next attempt. Run once with the listen socket shared by the workers (one
accept queue the kernel hands out) and once with `listen ... reuseport` (a
socket per worker, connections spread by the kernel's hash), each with a
new connection per request and with keepalive connections.
Admission is server-wide (a request is refused only when every worker's
slots and queue are full), so the 429s should come only from load past
the whole server's capacity.
Prints per run the attempts, 429s, their share and the answers per worker
(X-Worker: $pid). Needs QWEN_NGINX_MODULE, QWEN_TEST_MODELS (make sets
them: make load-admission).
Usage: admission.py [--seconds 30] [--load 0.8] [--slots 4] [--queue 16]
"""
import argparse, http.client, json, shutil, signal
import threading, time

import nginx_run
from nginx_run import MODELS, free_port

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=30)
ap.add_argument("--load", type=float, default=0.8)
ap.add_argument("--slots", type=int, default=4)
ap.add_argument("--queue", type=int, default=16)
ap.add_argument("--max-tokens", type=int, default=48)
ap.add_argument("--modes", default="shared,reuseport")
args = ap.parse_args()

def start(mode):
    port = free_port()
    listen = "127.0.0.1:%d%s" % (port, " reuseport" if mode == "reuseport" else "")
    p, d = nginx_run.start("qwen-admission-", f"""    qwen_model {MODELS}/tiny-q8_0.gguf;
    qwen_ctx 256;
    qwen_threads 1;
    qwen_slots {args.slots};
    qwen_queue {args.queue};
    qwen_draft off;
    server {{
        listen {listen};
        add_header X-Worker $pid always;
        location /v1/ {{ qwen_api openai; }}
    }}""", port, connections=512)
    return p, port, d


BODY = json.dumps({"prompt": [9707, 11, 1879], "max_tokens": args.max_tokens,
                   "temperature": 0, "ignore_eos": True})


def client(port, keepalive, stop_at, stats, lock):
    conn = None
    mine = {"ok": 0, "429": 0, "other": 0, "workers": {}}
    while time.time() < stop_at:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            hdrs = {"Content-Type": "application/json"}
            if not keepalive:
                hdrs["Connection"] = "close"
            conn.request("POST", "/v1/completions", BODY, hdrs)
            r = conn.getresponse()
            r.read()
            w = r.getheader("X-Worker", "?")
            if r.status == 200:
                mine["ok"] += 1
                mine["workers"][w] = mine["workers"].get(w, 0) + 1
            elif r.status == 429:
                mine["429"] += 1
            else:
                mine["other"] += 1
            if not keepalive or r.getheader("Connection", "") == "close":
                conn.close()
                conn = None
            if r.status == 429:
                time.sleep(0.2)
        except (OSError, http.client.HTTPException):
            mine["other"] += 1
            if conn:
                conn.close()
            conn = None
            time.sleep(0.1)
    if conn:
        conn.close()
    with lock:
        for k in ("ok", "429", "other"):
            stats[k] += mine[k]
        for w, n in mine["workers"].items():
            stats["workers"][w] = stats["workers"].get(w, 0) + n


def run(mode, keepalive):
    p, port, d = start(mode)
    capacity = 2 * (args.slots + args.queue)
    n = max(1, round(capacity * args.load))
    stats = {"ok": 0, "429": 0, "other": 0, "workers": {}}
    lock = threading.Lock()
    stop_at = time.time() + args.seconds
    ts = [threading.Thread(target=client, args=(port, keepalive, stop_at, stats, lock))
          for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    p.send_signal(signal.SIGQUIT)
    p.wait(timeout=60)
    shutil.rmtree(d, ignore_errors=True)
    total = stats["ok"] + stats["429"] + stats["other"]
    per = sorted(stats["workers"].values(), reverse=True)
    print(f"{mode:9} {'keepalive' if keepalive else 'new-conn':9} clients {n}/{capacity}: "
          f"{total} attempts, {stats['ok']} answered, {stats['429']} 429 "
          f"({100.0 * stats['429'] / max(total, 1):.1f}%), {stats['other']} other errors; "
          f"answers per worker {per}", flush=True)
    return stats


for mode in args.modes.split(","):
    for keepalive in (False, True):
        run(mode, keepalive)
