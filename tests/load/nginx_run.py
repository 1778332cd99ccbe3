"""nginx_run.py - what the load scripts (soak.py, admission.py) share: a
free loopback port, and an nginx started in the foreground from an http
block in a temporary directory, waited for until it accepts."""
import os, socket, subprocess, sys, tempfile, time

NGINX = os.environ.get("QWEN_NGINX_BIN", "/usr/sbin/nginx")
MODULE = os.environ["QWEN_NGINX_MODULE"]
MODELS = os.environ["QWEN_TEST_MODELS"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(prefix, http, port, workers=2, connections=1024):
    """nginx with `workers` worker processes serving `http` (the http
    block's contents; {d} in it is the run's directory); returns (process,
    directory) once `port` accepts, or exits with the error log."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)   # workers run as nobody
    os.makedirs(d + "/logs")
    conf = f"""load_module {MODULE};
worker_processes {workers};
daemon off;
error_log {d}/logs/error.log notice;
pid {d}/logs/nginx.pid;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
{http.replace("{d}", d)}
}}
"""
    open(d + "/nginx.conf", "w").write(conf)
    p = subprocess.Popen([NGINX, "-p", d + "/", "-c", d + "/nginx.conf"],
                         stdout=subprocess.DEVNULL, stderr=open(d + "/logs/stderr.log", "w"))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.5)
            return p, d
        except OSError:
            if p.poll() is not None:
                sys.exit("nginx exited: " + open(d + "/logs/error.log").read())
            time.sleep(0.1)
    sys.exit("nginx did not start")
