#!/usr/bin/env bash
# tools/run.sh - `make run`: serve a model with nginx in the foreground.
# The model, the first found of: MODEL (a .gguf file or a Hugging Face
# directory); Qwen/Qwen3-0.6B in the Hugging Face cache
# (~/.cache/huggingface/hub, or HF_HUB_CACHE / HF_HOME); qwen3:0.6b in
# Ollama's store (~/.ollama/models, or OLLAMA_MODELS: the manifest names
# the GGUF blob); $BUILD/models/Qwen3-0.6B, downloaded from huggingface.co
# when the network allows; else the tiny random-weight test model, served
# with a banner saying its answers are noise. The runtime directory is
# $BUILD/run (config, logs, temp files). Ctrl-C stops nginx.
#   tools/run.sh --which-model    print the model found and where from, then exit
set -euo pipefail

BUILD=${BUILD:-build}
NGX_BIN=${NGX_BIN:-/usr/sbin/nginx}
NGX_MODULE=${NGX_MODULE:-$BUILD/ngx_http_qwen_module.so}
PORT=${PORT:-8080}
MODEL=${MODEL:-}
HF_REPO=Qwen/Qwen3-0.6B
HF_FILES="config.json generation_config.json tokenizer.json tokenizer_config.json model.safetensors"
HF_ENDPOINT=${HF_ENDPOINT:-https://huggingface.co}
HF_CACHE=${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}
OLLAMA_STORE=${OLLAMA_MODELS:-$HOME/.ollama/models}
OLLAMA_MANIFEST=manifests/registry.ollama.ai/library/qwen3/0.6b
MODEL_FROM=

die() {
    echo "run: $*" >&2
    exit 1
}

# Qwen3-0.6B in the Hugging Face cache: the snapshot refs/main names, else
# the newest complete one.
hf_cache_model() {
    local repo=$HF_CACHE/models--Qwen--Qwen3-0.6B ref snap

    [ -d "$repo/snapshots" ] || return 1
    if [ -s "$repo/refs/main" ]; then
        read -r ref < "$repo/refs/main"
        snap=$repo/snapshots/$ref
        if [ -s "$snap/config.json" ] && [ -e "$snap/tokenizer.json" ]; then
            echo "$snap"
            return 0
        fi
    fi
    for snap in $(ls -1dt "$repo"/snapshots/*/ 2>/dev/null); do
        snap=${snap%/}
        if [ -s "$snap/config.json" ] && [ -e "$snap/tokenizer.json" ]; then
            echo "$snap"
            return 0
        fi
    done
    return 1
}

# qwen3:0.6b in Ollama's store: the manifest's model layer is a GGUF blob.
ollama_model() {
    local manifest=$OLLAMA_STORE/$OLLAMA_MANIFEST digest blob

    [ -s "$manifest" ] || return 1
    digest=$(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(next(l["digest"] for l in m.get("layers", [])
           if l.get("mediaType") == "application/vnd.ollama.image.model"))
' "$manifest" 2>/dev/null) || return 1
    blob=$OLLAMA_STORE/blobs/${digest/:/-}
    [ -s "$blob" ] || return 1
    echo "$blob"
}

# Download Qwen3-0.6B into dir when huggingface.co answers within seconds.
fetch_model() {
    local dir=$1 f

    if [ -s "$dir/model.safetensors" ] && [ -s "$dir/tokenizer.json" ]; then
        return 0
    fi
    if ! curl -sS -o /dev/null --connect-timeout 3 --max-time 6 \
            "$HF_ENDPOINT/$HF_REPO/resolve/main/config.json" 2>/dev/null
    then
        echo "run: $HF_ENDPOINT cannot be reached: $HF_REPO cannot be downloaded" >&2
        return 1
    fi
    echo "run: downloading $HF_REPO from $HF_ENDPOINT into $dir" >&2
    mkdir -p "$dir"
    for f in $HF_FILES; do
        [ -s "$dir/$f" ] && continue
        echo "run: downloading $f" >&2
        curl -fL --connect-timeout 10 --retry 3 -o "$dir/$f.part" \
            "$HF_ENDPOINT/$HF_REPO/resolve/main/$f" \
            || die "downloading $f failed"
        mv "$dir/$f.part" "$dir/$f"
    done
}

# The tiny random-weight test model (make test-models builds it).
test_model() {
    local m=$BUILD/models/tiny-f32.gguf

    if [ ! -s "$m" ]; then
        echo "run: no model found: generating the tiny random-weight test model" >&2
        "${MAKE:-make}" --no-print-directory BUILD="$BUILD" "$m" >&2 \
            || die "cannot generate the test model $m"
    fi
    echo "$m"
}

find_model() {
    local m

    if [ -n "$MODEL" ]; then
        MODEL_FROM="MODEL"
        return
    fi
    if m=$(hf_cache_model); then
        MODEL=$m MODEL_FROM="the Hugging Face cache ($HF_CACHE)"
        return
    fi
    if m=$(ollama_model); then
        MODEL=$m MODEL_FROM="Ollama's store ($OLLAMA_STORE, qwen3:0.6b)"
        return
    fi
    if fetch_model "$BUILD/models/Qwen3-0.6B"; then
        MODEL=$BUILD/models/Qwen3-0.6B MODEL_FROM="a download from $HF_ENDPOINT"
        return
    fi
    MODEL=$(test_model)
    MODEL_FROM="test"
}

noise_banner() {
    cat >&2 <<MSG

  ************************************************************************
  *  No Qwen3-0.6B found: serving the TINY RANDOM-WEIGHT TEST MODEL.      *
  *  Its answers are noise. To serve the real model, either:             *
  *    make run MODEL=/path/to/Qwen3-0.6B        (Hugging Face directory) *
  *    make run MODEL=/path/to/qwen3-0.6b.gguf   (GGUF file)              *
  *  or have it where make run looks:                                    *
  *    huggingface-cli download Qwen/Qwen3-0.6B  (Hugging Face cache)     *
  *    ollama pull qwen3:0.6b                    (Ollama's store)         *
  ************************************************************************

MSG
}

case $PORT in
    ''|*[!0-9]*) die "PORT must be a number, not \"$PORT\"" ;;
esac

find_model

[ -e "$MODEL" ] || die "MODEL $MODEL does not exist (a .gguf file or a Hugging Face directory)"

MODEL=$(realpath "$MODEL")

if [ "${1:-}" = --which-model ]; then
    echo "$MODEL_FROM: $MODEL"
    exit 0
fi
[ -f "$NGX_MODULE" ] || die "the module $NGX_MODULE is not built (make module)"
NGX_MODULE=$(realpath "$NGX_MODULE")
RUN=$(realpath -m "$BUILD/run")

mkdir -p "$RUN/logs" "$RUN/temp"
HTML=$(realpath html)
sed -e "s|@MODULE@|$NGX_MODULE|g" -e "s|@MODEL@|\"$MODEL\"|g" -e "s|@PORT@|$PORT|g" \
    -e "s|@HTML@|$HTML|g" conf/nginx.conf > "$RUN/nginx.conf"

# check first: a bad model or directive is reported before anything starts
"$NGX_BIN" -p "$RUN/" -c "$RUN/nginx.conf" -t -q || die "the configuration $RUN/nginx.conf is not valid"

[ "$MODEL_FROM" = test ] && noise_banner
echo "run: serving $MODEL (from $MODEL_FROM)"
echo "run: http://127.0.0.1:$PORT/v1/chat/completions  (config $RUN/nginx.conf, Ctrl-C stops)"
echo "run: the chat page: http://127.0.0.1:$PORT/chat/"
exec "$NGX_BIN" -p "$RUN/" -c "$RUN/nginx.conf" -g 'daemon off;'
