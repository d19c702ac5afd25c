#!/usr/bin/env bash
# Installs layerfreeze from the build tree into a temporary prefix, builds examples/trainer
# against it with find_package(layerfreeze) only, and runs it.
set -euo pipefail
build="$(realpath "$1")"
root="$(realpath "$2")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$root/examples/trainer" -B "$tmp/trainer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/trainer" >/dev/null
"$tmp/trainer/trainer"
# A distributed trainer against the installed layerfreeze::distributed, started by the installed
# launcher, when the package has the component.
if [[ -f "$tmp/prefix/include/layerfreeze/distributed.hpp" ]]; then
  [[ -x "$tmp/trainer/trainer_distributed" ]] || { echo "layerfreeze::distributed is not exported"; exit 1; }
  "$tmp/prefix/bin/layerfreeze" launch --nproc 2 --timeout 120 -- "$tmp/trainer/trainer_distributed"
fi
# The installed CLI finds the installed adapter for a TorchScript model.
"$tmp/prefix/bin/layerfreeze" presets >/dev/null
