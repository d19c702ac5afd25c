#!/usr/bin/env bash
# The core, the CLI and their tests built with AddressSanitizer (+ leak checking) and
# UndefinedBehaviorSanitizer in build-asan/, and run. Any report fails the run. CI runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
b=build-asan
cmake -S . -B $b -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAYERFREEZE_SANITIZE=ON -DLAYERFREEZE_WITH_TORCH=OFF \
      -DLAYERFREEZE_BUILD_BENCH=OFF >/dev/null
cmake --build $b -j "$(nproc)" >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir $b --output-on-failure -j "$(nproc)"
