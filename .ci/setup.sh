#!/usr/bin/env bash
# Installs everything m3cvcav needs on a fresh Debian machine (idempotent, quick when already done).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need_apt=()
for tool in ffmpeg:ffmpeg ffprobe:ffmpeg mkvmerge:mkvtoolnix cmake:cmake cc:gcc; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool##*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
# torch first and pinned: the CPU wheel on disk; any other spec would pull several GB of CUDA packages.
$PY -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null \
  || $PY -m pip install -q "torch==2.13.0"
$PY -m pip install -q -e ".[m3cvc,bench,test,cluster]"
