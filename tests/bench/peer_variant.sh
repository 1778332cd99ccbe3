#!/usr/bin/env bash
# peer_variant.sh VARIANT - prints a folder from which ../shared/peer/compare.sh compares our
# tables with one llama.cpp CPU variant only (ggml loads the best variant beside the
# executable; this folder's x86/ holds just VARIANT's). For tables compare.sh does not pair
# itself: `avx2_vnni` with llama.cpp's alderlake (AVX2 + AVX-VNNI) build, also on an AVX-512 CPU.
#   "$(tests/bench/peer_variant.sh alderlake)/compare.sh" -k avx2_vnni MODEL.gguf ...
set -euo pipefail
variant=${1:?usage: peer_variant.sh VARIANT (a libggml-cpu-VARIANT.so of the peer)}
peer=$(cd "${PEER_DIR:-../shared/peer}" && pwd)
[ -f "$peer/x86/libggml-cpu-$variant.so" ] || { echo "peer_variant.sh: no $variant in $peer/x86" >&2; exit 2; }
d=${TMPDIR:-/tmp}/qwen-peer-$variant
rm -rf "$d" && mkdir -p "$d/x86"
cp "$peer/x86/llama-bench" "$peer/x86/llama-server" "$d/x86/"
for f in "$peer"/x86/lib*.so*; do
  case $(basename "$f") in libggml-cpu-*) ;; *) ln -s "$f" "$d/x86/";; esac
done
ln -s "$peer/x86/libggml-cpu-$variant.so" "$d/x86/"
# compare.sh finds its peer programs beside itself: x86/ for every table but avx2, avx2.sh's
# folder for avx2; here both are the one variant
ln -s "$peer/compare.sh" "$d/compare.sh"
printf '#!/bin/sh\necho "%s/x86"\n' "$d" > "$d/avx2.sh" && chmod +x "$d/avx2.sh"
echo "$d"
