#!/usr/bin/env python3
"""soak.py - `make soak SOAK_SECONDS=N`: nginx with 2 workers on the tiny
model under mixed load for N seconds, then checks that it leaked nothing.

Load: CLIENTS threads of ours over HTTP/1.1 keepalive connections, each
request one of OpenAI chat / completions, Ollama chat / generate and
SageMaker /invocations, streamed or not; a third of the streamed ones are
abandoned after their first event (half closed normally, half reset with
RST through SO_LINGER 0). Beside them h2load (nghttp2-client) sends
non-streamed completions over HTTP/2 (h2c) in rounds.

Every SAMPLE seconds: per worker its open file descriptors and RSS.
Checks at the end (exit status 1 if one fails):
  - every request not abandoned got a complete answer ([DONE], "done":true,
    a whole JSON body) or a clean 429/503 JSON refusal
  - no worker died (same pids, no "exited on signal" in the error log)
  - after the warm-up (the first WARMUP seconds) each worker's fd count
    stays within FD_SLACK of its warm value plus the open connections it
    can hold, and its RSS within RSS_SLACK_MB
  - /metrics adds up: its finished requests (every reason) grew by the
    requests the engines admitted, sent - refused (429/503), and its
    refused requests by the 429/503 the clients saw
"""
import argparse, http.client, json, os, random, re, shutil, signal, socket, struct
import subprocess, sys, threading, time

import nginx_run
from nginx_run import MODELS, free_port

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
ap.add_argument("--clients", type=int, default=16)
ap.add_argument("--warmup", type=float, default=None)
ap.add_argument("--sample", type=float, default=10)
ap.add_argument("--fd-slack", type=int, default=8)
ap.add_argument("--rss-slack-mb", type=float, default=16)
ap.add_argument("--prefix-cache", default="8m")
ap.add_argument("--out", default=os.environ.get("SOAK_OUT", "build/soak"))
args = ap.parse_args()
if args.warmup is None:
    args.warmup = min(60.0, args.seconds * 0.2)

H2LOAD = shutil.which("h2load")


def start():
    port, h2port = free_port(), free_port()
    p, d = nginx_run.start("qwen-soak-", f"""    qwen_model {MODELS}/tiny-q8_0.gguf;
    qwen_ctx 1024;
    qwen_threads 1;
    qwen_slots 4;
    qwen_queue 16;
    # the prefix cache takes memory until it holds SIZE (the default 256m
    # fills for many minutes here): a small one is full within the warm-up
    qwen_prefix_cache {args.prefix_cache};
    server {{
        listen 127.0.0.1:{port} reuseport;
        listen 127.0.0.1:{h2port} http2;
        keepalive_requests 1000;
        location /v1/ {{ qwen_api openai; }}
        location /api/ {{ qwen_api ollama; }}
        location = /invocations {{ qwen_api sagemaker; }}
        location = /metrics {{ qwen_metrics; }}
        location = /health {{ qwen_health; }}
    }}""", port)
    return p, port, h2port, d


def workers(master):
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if ppid == master and b"worker process" in cmd:
            out.append(int(pid))
    return sorted(out)


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def metrics_finished(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    total = 0
    refused = 0
    running = waiting = 0
    for line in text.splitlines():
        m = re.match(r'qwen_request_success_total\{finished_reason="(\w+)"\} (\d+)', line)
        if m:
            total += int(m.group(2))
        m = re.match(r'qwen_request_refused_total\{reason="(\w+)"\} (\d+)', line)
        if m:
            refused += int(m.group(2))
        m = re.match(r"qwen_num_requests_(running|waiting) (\d+)", line)
        if m:
            if m.group(1) == "running":
                running = int(m.group(2))
            else:
                waiting = int(m.group(2))
    return total, running, waiting, refused


KINDS = ["openai_chat", "openai_cmpl", "ollama_chat", "ollama_gen", "sagemaker"]


def make_request(kind, stream, rng):
    n = rng.randint(4, 48)
    words = " ".join(rng.choice(["hello", "world", "qwen", "nginx", "soak", "test", "42"])
                     for _ in range(rng.randint(1, 30)))
    msgs = [{"role": "user", "content": words}]
    if kind == "openai_chat":
        return "/v1/chat/completions", {"messages": msgs, "max_tokens": n, "stream": stream}
    if kind == "openai_cmpl":
        return "/v1/completions", {"prompt": words, "max_tokens": n, "stream": stream}
    if kind == "ollama_chat":
        return "/api/chat", {"model": "qwen3", "messages": msgs, "stream": stream,
                             "options": {"num_predict": n}}
    if kind == "ollama_gen":
        return "/api/generate", {"model": "qwen3", "prompt": words, "stream": stream,
                                 "options": {"num_predict": n}}
    return "/invocations", {"messages": msgs, "max_tokens": n, "stream": stream}


def complete(kind, stream, body):
    """Is this 200 body a whole answer of its API?"""
    text = body.decode("utf-8", "replace")
    try:
        if not stream:
            v = json.loads(text)
            if kind.startswith("ollama"):
                return v.get("done") is True
            return bool(v.get("choices"))
        if kind.startswith("ollama"):
            lines = [l for l in text.split("\n") if l.strip()]
            return bool(lines) and json.loads(lines[-1]).get("done") is True
        events = [l[6:] for l in text.split("\n") if l.startswith("data: ")]
        return bool(events) and events[-1].strip() == "[DONE]"
    except ValueError:
        return False


class Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {"sent": 0, "complete": 0, "refused": 0, "abandoned": 0, "bad": 0,
                  "h2_sent": 0, "h2_2xx": 0, "h2_refused": 0, "h2_bad": 0}
        self.bad_samples = []

    def add(self, k, n=1, sample=None):
        with self.lock:
            self.c[k] += n
            if sample and len(self.bad_samples) < 10:
                self.bad_samples.append(sample)


def client(port, stop_at, totals, seed):
    rng = random.Random(seed)
    conn = None
    while time.time() < stop_at:
        kind = rng.choice(KINDS)
        stream = rng.random() < 0.6
        abandon = stream and rng.random() < (1 / 3) / 0.6   # a third of all requests
        path, body = make_request(kind, stream, rng)
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            totals.add("sent")
            r = conn.getresponse()
            if r.status in (429, 503):
                data = r.read()
                try:
                    json.loads(data)["error"]
                    totals.add("refused")
                except (ValueError, KeyError, TypeError):
                    totals.add("bad", sample=f"{r.status} without a JSON error: {data[:200]!r}")
                time.sleep(0.2)
                continue
            if r.status != 200:
                totals.add("bad", sample=f"{path} {r.status}: {r.read()[:200]!r}")
                conn.close()
                conn = None
                continue
            if abandon:
                r.read1(65536) if hasattr(r, "read1") else r.read(1)
                if rng.random() < 0.5:   # RST instead of FIN
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         struct.pack("ii", 1, 0))
                conn.close()
                conn = None
                totals.add("abandoned")
                continue
            data = r.read()
            if complete(kind, stream, data):
                totals.add("complete")
            else:
                totals.add("bad", sample=f"{path} stream={stream} incomplete: {data[-200:]!r}")
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            totals.add("bad", sample=f"{path}: {e!r}")
            if conn:
                conn.close()
            conn = None
            time.sleep(0.2)
    if conn:
        conn.close()


def h2_rounds(h2port, stop_at, totals, tmp):
    body = tmp + "/h2body.json"
    with open(body, "w") as f:
        json.dump({"prompt": "hello over http2", "max_tokens": 8}, f)
    while time.time() < stop_at - 5:
        out = subprocess.run([H2LOAD, "-c", "2", "-m", "2", "-n", "20", "-d", body,
                              "-H", "content-type: application/json",
                              f"http://127.0.0.1:{h2port}/v1/completions"],
                             capture_output=True, text=True, timeout=300).stdout
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done", out)
        s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if not m or not s:
            totals.add("h2_bad", sample="h2load: " + out[-300:])
            time.sleep(5)
            continue
        totals.add("h2_sent", int(m.group(3)))
        totals.add("h2_2xx", int(s.group(1)))
        # the 4xx/5xx h2load sees here are 429/503 (no other status is sent)
        totals.add("h2_refused", int(s.group(3)) + int(s.group(4)))
        totals.add("h2_bad", int(m.group(3)) - int(s.group(1)) - int(s.group(3))
                   - int(s.group(4)))
        time.sleep(2)


def main():
    os.makedirs(args.out, exist_ok=True)
    p, port, h2port, d = start()
    pids0 = workers(p.pid)
    m0 = metrics_finished(port)
    fin0, ref0 = m0[0], m0[3]
    totals = Totals()
    t0 = time.time()
    stop_at = t0 + args.seconds
    ts = [threading.Thread(target=client, args=(port, stop_at, totals, 1000 + i))
          for i in range(args.clients)]
    if H2LOAD:
        ts.append(threading.Thread(target=h2_rounds, args=(h2port, stop_at, totals, d)))
    else:
        print("soak: h2load not found (apt-get install nghttp2-client): no HTTP/2 load")
    for t in ts:
        t.start()
    samples = []
    csv = open(os.path.join(args.out, "samples.csv"), "w")
    csv.write("seconds,worker,fds,rss_kb,sent,complete,refused,abandoned,bad\n")
    print(f"soak: {args.seconds:.0f} s, {args.clients} clients + h2load, workers {pids0}, "
          f"warm-up {args.warmup:.0f} s; samples in {args.out}/samples.csv", flush=True)
    while time.time() < stop_at:
        time.sleep(min(args.sample, max(0.1, stop_at - time.time())))
        now = time.time() - t0
        c = dict(totals.c)
        line = []
        for w in pids0:
            f, r = fds(w), rss_kb(w)
            samples.append((now, w, f, r))
            csv.write(f"{now:.0f},{w},{f},{r},{c['sent']},{c['complete']},{c['refused']},"
                      f"{c['abandoned']},{c['bad']}\n")
            line.append(f"{w}: {f} fds {r / 1024:.1f} MB")
        csv.flush()
        print(f"  {now:5.0f} s  sent {c['sent']} ok {c['complete']} refused {c['refused']} "
              f"abandoned {c['abandoned']} bad {c['bad']} h2 {c['h2_2xx']}/{c['h2_sent']}  "
              + ", ".join(line), flush=True)
    for t in ts:
        t.join()
    # let the engines finish what was admitted (abandoned streams are cancelled)
    deadline = time.time() + 60
    while time.time() < deadline:
        fin, running, waiting, _ = metrics_finished(port)
        if running == 0 and waiting == 0:
            break
        time.sleep(0.5)
    time.sleep(1.5)     # the gauges and counters are refreshed per request end
    m1 = metrics_finished(port)
    fin, mref = m1[0] - fin0, m1[3] - ref0
    pids1 = workers(p.pid)
    errlog = open(d + "/logs/error.log").read()
    p.send_signal(signal.SIGQUIT)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
    c = totals.c
    failures = []
    sent = c["sent"] + c["h2_sent"]
    refused = c["refused"] + c["h2_refused"]
    print(f"soak: {sent} requests ({c['sent']} HTTP/1.1, {c['h2_sent']} HTTP/2): "
          f"{c['complete'] + c['h2_2xx']} complete, {refused} refused 429/503, "
          f"{c['abandoned']} abandoned, {c['bad'] + c['h2_bad']} bad")
    if c["bad"] or c["h2_bad"]:
        failures.append(f"{c['bad'] + c['h2_bad']} requests neither complete nor refused: "
                        + "; ".join(totals.bad_samples))
    if pids1 != pids0 or "exited on signal" in errlog:
        failures.append(f"workers changed {pids0} -> {pids1} or died: "
                        + "\n".join(l for l in errlog.splitlines() if "signal" in l))
    print(f"soak: /metrics finished {fin} = sent {sent} - refused {refused} "
          f"(= {sent - refused}){'' if fin == sent - refused else '  MISMATCH'}")
    if fin != sent - refused:
        failures.append(f"/metrics finished {fin} != sent - refused {sent - refused}")
    print(f"soak: /metrics refused {mref}, the clients saw {refused} 429/503"
          f"{'' if mref == refused else '  MISMATCH'}")
    if mref != refused:
        failures.append(f"/metrics refused {mref} != the {refused} 429/503 the clients saw")
    conns = args.clients + 4 + 4  # our keepalive connections, h2load's, slack
    for w in pids0:
        warm = [s for s in samples if s[1] == w and s[0] >= args.warmup]
        if len(warm) < 2:
            continue
        f = [s[2] for s in warm]
        r = [s[3] for s in warm]
        print(f"soak: worker {w} after warm-up: fds {min(f)}..{max(f)}, "
              f"RSS {min(r) / 1024:.1f}..{max(r) / 1024:.1f} MB")
        if max(f) - min(f) > conns + args.fd_slack:
            failures.append(f"worker {w}: fds varied {min(f)}..{max(f)} (bound "
                            f"{conns + args.fd_slack})")
        if (max(r) - r[0]) / 1024 > args.rss_slack_mb:
            failures.append(f"worker {w}: RSS grew {r[0] / 1024:.1f} -> {max(r) / 1024:.1f} MB "
                            f"(bound +{args.rss_slack_mb} MB)")
    shutil.rmtree(d, ignore_errors=True)
    for f in failures:
        print("soak: FAILED: " + f)
    print("soak: " + ("passed" if not failures else f"{len(failures)} check(s) failed"))
    sys.exit(1 if failures else 0)


main()
