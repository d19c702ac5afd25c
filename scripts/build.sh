#!/usr/bin/env bash
# Installs what is missing (Debian 12), configures and builds into build/ (or $BUILD_DIR).
# LAYERFREEZE_NO_TORCH=1 builds the torch-free core and CLI only (no LibTorch install).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build}"
if [[ -n "${LAYERFREEZE_NO_TORCH:-}" ]]; then
  scripts/install-deps.sh
  torch=OFF
else
  scripts/install-deps.sh --with-torch
  torch=ON
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" -DLAYERFREEZE_WITH_TORCH=$torch "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
