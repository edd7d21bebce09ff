#!/usr/bin/env bash
# bench/gpu_check.sh: bench/gpu_check.py (the m3cvc networks at their production shapes) on a lent GPU, in one call.
#
#   here, once (PyPI reachable):  bash bench/gpu_check.sh fetch
#       downloads what the lent image lacks, as Python 3.12 x86-64 wheels, into .whl/gpu_check (git-ignored, about
#       43 MiB: diffusers, PyAV, Brotli; with the tracked tree, about 56 of the 64 MiB a call may carry);
#   there, with the device tool:  run(command="bash bench/gpu_check.sh run", carry=[".whl/gpu_check"], timeout_s=600)
#       installs them into /tmp/site, maps the repo's folders onto the m3cvcav package (setup.py's layout, no build:
#       the native core's pure-Python fallback), runs the check within BUDGET_S seconds (default 480) and leaves the
#       table (gpu_check.md), the JSON and the log in $OUT.
#
# Left out, and why: onnxruntime-gpu and TensorRT (hundreds of MiB each: their rows say "not installed"), the
# EfficientNet-Lite0 weights package (17 MiB: the tiny end-to-end rows give the lite embedder seeded random weights).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(diffusers==0.42.1 av==18.1.1 brotli==1.2.1)
DIR=.whl/gpu_check

case "${1:-}" in
fetch)
    rm -rf "$DIR" && mkdir -p "$DIR"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$DIR" "${WHEELS[@]}"
    du -ch "$DIR"/*.whl | tail -1
    ;;
run)
    out=${OUT:-/tmp/gpu_check_out}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$DIR"/*.whl
    pkg=/tmp/m3pkg/m3cvcav
    rm -rf /tmp/m3pkg && mkdir -p "$pkg"
    for f in "$PWD"/plugin/*; do ln -s "$f" "$pkg/"; done
    for d in filters core bitstream engines bench; do ln -s "$PWD/$d" "$pkg/$d"; done
    export PYTHONPATH=/tmp/site:/tmp/m3pkg PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 bench/gpu_check.py --budget-s "${BUDGET_S:-480}" --json "$out/gpu_check.json" --md "$out/gpu_check.md" \
        2>&1 | tee "$out/gpu_check.log"
    ;;
*)
    echo "usage: bash bench/gpu_check.sh fetch|run" >&2
    exit 2
    ;;
esac
