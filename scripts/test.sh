#!/usr/bin/env bash
# The README's test command: install what is missing, build, run every test (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
