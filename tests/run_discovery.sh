#!/usr/bin/env bash
# tests/run_discovery.sh - where `make run` (tools/run.sh) finds its model,
# in a temporary HOME: MODEL first, then Qwen/Qwen3-0.6B in the Hugging
# Face cache (the snapshot refs/main names, else the newest complete one),
# then qwen3:0.6b in Ollama's store (manifest -> GGUF blob), then a
# download (huggingface.co made unreachable here: it must fall through at
# once), then the tiny test model with the "answers are noise" banner.
# Ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${BUILD:-build}" && pwd)
tiny=$BUILD/models/tiny-f32.gguf
pass=0 fail=0
check() {   # name, output, expected substring
    if [[ "$2" == *"$3"* ]]; then pass=$((pass + 1)); echo "ok - $1";
    else fail=$((fail + 1)); echo "not ok - $1"; echo "    got: $2"; echo "    want: $3"; fi
}
[ -s "$tiny" ] || { echo "run_discovery: $tiny missing (make test-models)"; echo "0 passed, 1 failed"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
home=$tmp/home
mkdir -p "$home"
# nothing answers on port 9: the download must fail within its timeout
run() {
    (cd "$here" && env -u HF_HUB_CACHE -u HF_HOME -u OLLAMA_MODELS HOME="$home" \
        HF_ENDPOINT=http://127.0.0.1:9 BUILD="$BUILD" "$@" tools/run.sh --which-model 2>&1)
}

out=$(run MODEL="$tiny")
check "MODEL wins" "$out" "MODEL: $tiny"

hub=$home/.cache/huggingface/hub/models--Qwen--Qwen3-0.6B
mkdir -p "$hub/snapshots/aaa111" "$hub/snapshots/bbb222" "$hub/refs"
for s in aaa111 bbb222; do
    echo '{}' > "$hub/snapshots/$s/config.json"
    echo '{}' > "$hub/snapshots/$s/tokenizer.json"
    : > "$hub/snapshots/$s/model.safetensors"
done
echo aaa111 > "$hub/refs/main"
out=$(run)
check "the Hugging Face cache: the snapshot refs/main names" "$out" \
      "the Hugging Face cache ($home/.cache/huggingface/hub): $hub/snapshots/aaa111"
out=$(run MODEL="$tiny")
check "... MODEL still wins over it" "$out" "MODEL: $tiny"
rm "$hub/refs/main"
mkdir -p "$hub/snapshots/ccc333"
echo '{}' > "$hub/snapshots/ccc333/config.json"      # newest, but no tokenizer
touch -d '1 hour ago' "$hub/snapshots/aaa111"
touch "$hub/snapshots/bbb222"
out=$(run)
check "... without refs/main: the newest complete snapshot" "$out" "$hub/snapshots/bbb222"
out=$(run HF_HUB_CACHE=/nonexistent)
check "... HF_HUB_CACHE moves the cache" "$out" "$BUILD/models/tiny-f32.gguf"
rm -rf "$home/.cache"

store=$home/.ollama/models
mkdir -p "$store/manifests/registry.ollama.ai/library/qwen3" "$store/blobs"
cat > "$store/manifests/registry.ollama.ai/library/qwen3/0.6b" <<'JSON'
{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
 "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:c0ffee","size":10},
 "layers":[{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:aaaa","size":1},
           {"mediaType":"application/vnd.ollama.image.model","digest":"sha256:7f4030143c1c","size":4}]}
JSON
out=$(run)
check "Ollama's manifest without its blob: not taken" "$out" "test: $tiny"
echo GGUF > "$store/blobs/sha256-7f4030143c1c"
out=$(run)
check "Ollama's store: the manifest's model blob" "$out" \
      "Ollama's store ($store, qwen3:0.6b): $store/blobs/sha256-7f4030143c1c"
rm -rf "$home/.ollama"

t0=$(date +%s)
out=$(run)
check "nothing found, no network: the test model" "$out" "test: $tiny"
check "... after trying the download" "$out" "cannot be reached"
[ $(( $(date +%s) - t0 )) -le 10 ]; check "... within seconds" "$?" "0"

# the whole of make run with a stand-in nginx: the banner, the model in
# the configuration
printf '#!/bin/sh\necho "nginx $*"\n' > "$tmp/nginx"
chmod +x "$tmp/nginx"
# BUILD elsewhere has no test model: point it at ours
mkdir -p "$tmp/build/models" && ln -sf "$tiny" "$tmp/build/models/tiny-f32.gguf"
out=$(cd "$here" && env -u HF_HUB_CACHE -u HF_HOME -u OLLAMA_MODELS HOME="$home" \
      HF_ENDPOINT=http://127.0.0.1:9 BUILD="$tmp/build" NGX_BIN="$tmp/nginx" \
      NGX_MODULE="$tiny" PORT=18080 tools/run.sh 2>&1)
check "make run with the test model: the banner" "$out" "Its answers are noise"
check "... says how to pass a real model" "$out" "make run MODEL=/path/to/Qwen3-0.6B"
check "... serves it" "$out" "run: serving $tiny (from test)"
grep -q "qwen_model \"$tiny\"" "$tmp/build/run/nginx.conf"
check "... in the written configuration" "$?" "0"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
