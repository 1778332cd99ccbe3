#!/usr/bin/env bash
# tools/run.sh - `make run`: serve a model with nginx in the foreground.
# MODEL is a .gguf file or a Hugging Face directory; without it, Qwen3-0.6B
# is fetched from huggingface.co when the network allows. The runtime
# directory is $BUILD/run (config, logs, temp files). Ctrl-C stops nginx.
set -euo pipefail

BUILD=${BUILD:-build}
NGX_BIN=${NGX_BIN:-/usr/sbin/nginx}
NGX_MODULE=${NGX_MODULE:-$BUILD/ngx_http_qwen_module.so}
PORT=${PORT:-8080}
MODEL=${MODEL:-}
HF_REPO=Qwen/Qwen3-0.6B
HF_FILES="config.json generation_config.json tokenizer.json tokenizer_config.json model.safetensors"

die() {
    echo "run: $*" >&2
    exit 1
}

fetch_model() {
    local dir=$1 f

    if [ -s "$dir/model.safetensors" ] && [ -s "$dir/tokenizer.json" ]; then
        return 0
    fi

    echo "run: no MODEL given: fetching $HF_REPO from huggingface.co into $dir"
    if ! curl -sS -o /dev/null --connect-timeout 5 --max-time 10 \
            "https://huggingface.co/$HF_REPO/resolve/main/config.json" 2>/dev/null
    then
        cat >&2 <<MSG
run: huggingface.co cannot be reached from this machine, so $HF_REPO
     cannot be downloaded. Either pass a model you have:
         make run MODEL=/path/to/Qwen3-0.6B            (Hugging Face directory)
         make run MODEL=/path/to/qwen3-0.6b.gguf       (GGUF file, e.g. Ollama's blob)
     or generate a small random-weight test model and serve that:
         make test-models
         make run MODEL=$BUILD/models/tiny-f32.gguf
MSG
        exit 1
    fi

    mkdir -p "$dir"
    for f in $HF_FILES; do
        [ -s "$dir/$f" ] && continue
        echo "run: downloading $f"
        curl -fL --connect-timeout 10 --retry 3 -o "$dir/$f.part" \
            "https://huggingface.co/$HF_REPO/resolve/main/$f" \
            || die "downloading $f failed"
        mv "$dir/$f.part" "$dir/$f"
    done
}

case $PORT in
    ''|*[!0-9]*) die "PORT must be a number, not \"$PORT\"" ;;
esac

if [ -z "$MODEL" ]; then
    MODEL=$BUILD/models/Qwen3-0.6B
    fetch_model "$MODEL"
fi

[ -e "$MODEL" ] || die "MODEL $MODEL does not exist (a .gguf file or a Hugging Face directory)"
[ -f "$NGX_MODULE" ] || die "the module $NGX_MODULE is not built (make module)"

MODEL=$(realpath "$MODEL")
NGX_MODULE=$(realpath "$NGX_MODULE")
RUN=$(realpath -m "$BUILD/run")

mkdir -p "$RUN/logs" "$RUN/temp"
HTML=$(realpath html)
sed -e "s|@MODULE@|$NGX_MODULE|g" -e "s|@MODEL@|\"$MODEL\"|g" -e "s|@PORT@|$PORT|g" \
    -e "s|@HTML@|$HTML|g" conf/nginx.conf > "$RUN/nginx.conf"

# check first: a bad model or directive is reported before anything starts
"$NGX_BIN" -p "$RUN/" -c "$RUN/nginx.conf" -t -q || die "the configuration $RUN/nginx.conf is not valid"

echo "run: serving $MODEL"
echo "run: http://127.0.0.1:$PORT/v1/chat/completions  (config $RUN/nginx.conf, Ctrl-C stops)"
echo "run: the chat page: http://127.0.0.1:$PORT/chat/"
exec "$NGX_BIN" -p "$RUN/" -c "$RUN/nginx.conf" -g 'daemon off;'
