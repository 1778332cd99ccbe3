"""sse.py - one streamed /v1/completions request to a local server, timed:
shared by the bench clients (clients.py, workload.py)."""
import json
import socket
import time


def stream(port, body):
    """POST body (a dict) with stream on; returns (time to the first text
    in s, end to end in s, the usage object of the closing chunk or {})."""
    data = json.dumps(body).encode()
    req = (b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n"
           b"Connection: close\r\n\r\n" % len(data)) + data
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    first, buf = None, b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
        if first is None and b'"text"' in buf:
            first = time.monotonic()
        if b"data: [DONE]" in buf:
            break
    s.close()
    end = time.monotonic()
    head = buf.split(b"\r\n", 1)[0]
    if b" 200 " not in head + b" ":
        raise SystemExit("request failed: %s" % head.decode(errors="replace"))
    usage = [json.loads(line[6:]) for line in buf.split(b"\n")
             if line.startswith(b"data: {") and b'"completion_tokens"' in line]
    return (first or end) - t0, end - t0, usage[-1]["usage"] if usage else {}
