#!/usr/bin/env bash
# The torch half of the tests again, against LibTorch 2.13 — the LibTorch inside the PyTorch
# 2.13.0 wheel (scripts/python-env.sh installs it into a venv) — in a second build directory
# (build-torch2/, or $TORCH2_BUILD_DIR). The adapter, layerfreeze::distributed, the examples, the
# torch and distributed tests and the installed-package trainer are built and run against it; the
# torch-free core tests run once, in the first build (scripts/test.sh). The TorchScript fixtures
# of this build are exported by PyTorch 2.13 itself, and the Python peers run here as oracles
# (tests/oracle: transformers for the model families; Lightning and the finetuning-scheduler).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --with-torch  # Gloo's headers, and Debian's python3-torch for the
                                      # architecture fixtures (torchvision)
venv="$(scripts/python-env.sh | tail -n 1)"
prefix="$("$venv/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"
build_dir="${TORCH2_BUILD_DIR:-build-torch2}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
      -DCMAKE_PREFIX_PATH="$prefix" -DLAYERFREEZE_BUILD_CORE_TESTS=OFF \
      -DLAYERFREEZE_BUILD_BENCH=OFF -DLAYERFREEZE_TORCHSCRIPT_PYTHON="$venv/bin/python" \
      -DLAYERFREEZE_PYTHON_VENV="$venv" "$@" \
      >/dev/null  # (the wheel's TorchConfig warns that it has no kineto, the profiler: harmless)
# The build must use the wheel's LibTorch, not Debian's, which is installed too.
grep -q "^Torch_DIR:PATH=$prefix" "$build_dir/CMakeCache.txt" ||
  { echo "test-torch2: $build_dir did not find LibTorch in $prefix" >&2; exit 1; }
cmake --build "$build_dir" -j "$(nproc)"
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
