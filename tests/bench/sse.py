"""sse.py - one streamed /v1/completions request to a local server, timed:
shared by the bench clients (clients.py, workload.py)."""
import json
import socket
import threading
import time


def stream(port, body, path="/v1/completions"):
    """POST body (a dict) with stream on; returns (time to the first text
    in s, end to end in s, the usage object of the closing chunk or {}).
    The streamed text is in stream.text afterwards (completions' "text" or
    chat's "content" deltas)."""
    data = json.dumps(body).encode()
    req = (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n"
           b"Connection: close\r\n\r\n" % len(data)) + data
    t0 = time.monotonic()
    # a server that stops answering fails the request instead of hanging
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    s.sendall(req)
    first, buf = None, b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
        if first is None and (b'"text"' in buf or b'"content"' in buf):
            first = time.monotonic()
        if b"data: [DONE]" in buf:
            break
    s.close()
    end = time.monotonic()
    head = buf.split(b"\r\n", 1)[0]
    if b" 200 " not in head + b" ":
        raise SystemExit("request failed: %s" % head.decode(errors="replace"))
    chunks = [json.loads(line[6:]) for line in buf.split(b"\n") if line.startswith(b"data: {")]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    stream.text = "".join(ch.get("text") or (ch.get("delta") or {}).get("content") or ""
                          for c in chunks for ch in c.get("choices") or [])
    return (first or end) - t0, end - t0, usage[-1] if usage else {}


def run_all(targets):
    """Run the callables in threads at once; the wall time until the last
    ends."""
    threads = [threading.Thread(target=t) for t in targets]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0
