#!/usr/bin/env bash
# The README's test command: set up (idempotent), build and run the C unit tests with ctest, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j 2 >/dev/null
ctest --test-dir build --output-on-failure
python3 -m pytest -q -p no:cacheprovider "$@"
