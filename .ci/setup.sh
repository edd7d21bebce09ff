#!/usr/bin/env bash
# Installs everything m3cvcav needs on a fresh Debian machine (idempotent, quick when already done).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need_apt=()
for tool in ffmpeg:ffmpeg ffprobe:ffmpeg mkvmerge:mkvtoolnix cmake:cmake cc:gcc; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool##*:}")
done
# GStreamer with its Python plugin loader, for m3cvcdec (docs/media-frameworks.md): tools, gst-play, the plugins
# playbin plays an .mkv with (matroska, opus, textoverlay for the descriptions).
for pkg in gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-base-apps gstreamer1.0-plugins-good \
           gstreamer1.0-x gstreamer1.0-python3-plugin-loader python3-gst-1.0; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
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
# VapourSynth (docs/media-frameworks.md): its Linux wheels need Python >= 3.12, so a venv of one beside this Python;
# skipped, with the reason, where there is none (the VapourSynth tests then skip too).
$PY -m m3cvcav vs setup --quiet || echo "[setup] VapourSynth not set up (the tests that need it will skip)"
