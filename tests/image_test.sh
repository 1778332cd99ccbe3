#!/usr/bin/env bash
# tests/image_test.sh - `make test-image`: the built image's own nginx, run
# with `buildah run --isolation chroot` (podman run cannot start containers
# in this sandbox), arm64 under qemu: its architecture (uname -m in it),
# the tiny test model copied into /opt/ml/model, `serve` as SageMaker starts
# it, then GET /ping, a plain and a streamed /invocations, an LMI body, and
# SIGTERM: serve drains and exits 0. Ends with "N passed, N failed".
set -u
: "${BUILDAH:?}" "${IMAGE:?}" "${MODEL_FILE:?}"
pass=0 fail=0
ok() { if [ "$1" = 0 ]; then pass=$((pass + 1)); echo "ok - $2"; else fail=$((fail + 1)); echo "not ok - $2"; fi; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
ctr=$($BUILDAH from --pull-never "$IMAGE") || { echo "test-image: cannot make a container of $IMAGE"; exit 1; }
cleanup() { $BUILDAH rm "$ctr" >/dev/null 2>&1; rm -f "$log"; }
trap cleanup EXIT
$BUILDAH copy --chown 10001 "$ctr" "$MODEL_FILE" /opt/ml/model/ >/dev/null

# the image's userland is the architecture asked for (arm64: its binaries
# run under qemu here), so the module that serve's nginx loads below is too
case ${IMAGE_ARCH:-} in
    arm64) want=aarch64 ;;
    amd64) want=x86_64 ;;
    *) want=unknown ;;
esac
machine=$($BUILDAH run --isolation chroot "$ctr" -- uname -m 2>&1)
[ "$machine" = "$want" ]
ok $? "the image runs as ${IMAGE_ARCH:-?}: uname -m in it says $machine (host: $(uname -m))"

t0=$(date +%s)
$BUILDAH run --isolation chroot --network host --env SAGEMAKER_BIND_TO_PORT="$port" \
    --env QWEN_DRAIN_TIMEOUT=5s "$ctr" -- serve > "$log" 2>&1 &
run=$!

# the processes are the host's (chroot isolation): serve is below buildah run
descendants() {
    local p=$1 c
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done
}

up=1
for _ in $(seq 600); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ping")" = 200 ]; then up=0; break; fi
    kill -0 "$run" 2>/dev/null || break
    sleep 0.5
done
ok $up "serve started the image's nginx; GET /ping 200 after $(( $(date +%s) - t0 )) s"
if [ $up != 0 ]; then cat "$log"; echo "$pass passed, $((fail + 5)) failed"; exit 1; fi

grep -q "qwen_threads\|compute threads" "$log"; ok $? "serve sized the compute threads ($(grep -o '[0-9]* compute threads' "$log"))"

body=$(curl -s "http://127.0.0.1:$port/invocations" -H 'Content-Type: application/json' \
       -d '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":8}')
echo "$body" | grep -q '"object":"chat.completion"' && echo "$body" | grep -q '"completion_tokens":8'
ok $? "plain /invocations: a chat.completion with 8 tokens"

sse=$(curl -sN "http://127.0.0.1:$port/invocations" -H 'Content-Type: application/json' \
      -d '{"prompt":"Once upon a time","max_tokens":16,"stream":true}')
events=$(printf '%s\n' "$sse" | grep -c '^data: {"id":"cmpl-')
printf '%s\n' "$sse" | tail -n 2 | grep -q '^data: \[DONE\]'
ok $? "streamed /invocations: $events text_completion events, then [DONE]"

lmi=$(curl -s "http://127.0.0.1:$port/invocations" -H 'Content-Type: application/json' \
      -d '{"inputs":"What is Deep Learning?","parameters":{"max_new_tokens":4}}')
echo "$lmi" | grep -q '^\[{"generated_text":'
ok $? "LMI body: [{\"generated_text\": ...}]"

serve=""
for p in $(descendants "$run"); do
    case $(tr '\0' ' ' < /proc/"$p"/cmdline 2>/dev/null) in
        *"bash /usr/local/bin/serve"*) serve=$p; break ;;
    esac
done
if [ -n "$serve" ]; then
    kill -TERM "$serve"
    wait "$run"; rc=$?
    grep -q "serve: nginx exited with status 0" "$log"; st=$?
    ok $st "SIGTERM to serve: drained, nginx exited 0 (buildah run: $rc)"
    [ $st = 0 ] || grep -v '"POST\|"GET' "$log" | tail -n 20
else
    ok 1 "SIGTERM to serve: serve's process not found"
    kill "$run"; wait "$run"
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
