#!/usr/bin/env bash
# Installs layerfreeze from the build tree into a temporary prefix, builds examples/trainer
# against it with find_package(layerfreeze) only, and runs it.
set -euo pipefail
build="$(realpath "$1")"
root="$(realpath "$2")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
# The LibTorch the build used (Debian's 1.13, or 2.x from the wheel in build-torch2/): the package
# records it, and find_package(layerfreeze) must find it with nothing else given.
torch_root=$(dirname "$(sed -n 's/^Torch_DIR:PATH=//p' "$build/CMakeCache.txt")")
grep -q "$torch_root" "$tmp"/prefix/lib*/cmake/layerfreeze/layerfreezeConfig.cmake ||
  { echo "the package does not record the LibTorch it was built against ($torch_root)"; exit 1; }
cmake -S "$root/examples/trainer" -B "$tmp/trainer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/trainer" >/dev/null
"$tmp/trainer/trainer"
# The trainer links the libtorch the package was built against, not another copy a search found.
built_with=$(sed -n 's/^TORCH_LIBRARY:FILEPATH=//p' "$build/CMakeCache.txt")
linked=$(sed -n 's/^TORCH_LIBRARY:FILEPATH=//p' "$tmp/trainer/CMakeCache.txt")
[[ "$(realpath "$linked")" == "$(realpath "$built_with")" ]] ||
  { echo "the trainer found $linked, the package was built against $built_with"; exit 1; }
# A libtorch.so from elsewhere (Debian's beside a wheel's headers, say) fails configuration with
# the fix, instead of linking and dying in c10 at run time.
mkdir -p "$tmp/elsewhere"
: > "$tmp/elsewhere/libtorch.so"
if cmake -S "$root/examples/trainer" -B "$tmp/mixed" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DTORCH_LIBRARY="$tmp/elsewhere/libtorch.so" >"$tmp/mixed.txt" 2>&1; then
  echo "a trainer with another libtorch.so configured"; exit 1
fi
grep -q "Fix: configure with" "$tmp/mixed.txt" ||
  { cat "$tmp/mixed.txt"; echo "no fix named for a mixed LibTorch"; exit 1; }
# Every C++ snippet of README.md and docs/ compiles against the installed package, each alone
# (tests/docs/snippets.py: a missing include is found).
python3 "$root/tests/docs/snippets.py" "$root" "$tmp/snippets" >/dev/null
cmake -S "$tmp/snippets" -B "$tmp/snippets/b" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/snippets/b" >/dev/null || { echo "a documented snippet does not compile"; exit 1; }
# A plan check in CI with the public plan API only (examples/plan_in_ci, layerfreeze::plan): it
# builds where CMake cannot find LibTorch at all, never loads libtorch, passes inside the range
# and fails (exit 1) outside it.
cmake -S "$root/examples/plan_in_ci" -B "$tmp/plan_in_ci" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON >/dev/null
cmake --build "$tmp/plan_in_ci" >/dev/null
ldd "$tmp/plan_in_ci/plan_in_ci" > "$tmp/plan_in_ci.ldd"
if grep -E 'libtorch|libc10' "$tmp/plan_in_ci.ldd"; then
  echo "plan_in_ci loads libtorch"; exit 1
fi
grep -q liblayerfreeze_plan "$tmp/plan_in_ci.ldd" || { echo "plan_in_ci does not link layerfreeze::plan"; exit 1; }
# Asking for the torch component where LibTorch cannot be found is an error, not a silent plan.
mkdir -p "$tmp/wants_torch"
printf 'cmake_minimum_required(VERSION 3.20)\nproject(x CXX)\nfind_package(layerfreeze REQUIRED COMPONENTS torch)\n' > "$tmp/wants_torch/CMakeLists.txt"
if cmake -S "$tmp/wants_torch" -B "$tmp/wants_torch/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON >/dev/null 2>&1; then
  echo "find_package(layerfreeze COMPONENTS torch) passed without LibTorch"; exit 1
fi
"$tmp/plan_in_ci/plan_in_ci" preset:lp_lora builtin:llama2-7b 0.3 0.7 | grep -q "plan check passed"
if "$tmp/plan_in_ci/plan_in_ci" preset:lp_lora builtin:llama2-7b 0.9 1.0 >"$tmp/fail.txt"; then
  echo "plan_in_ci should fail outside its range"; exit 1
fi
grep -q "FAIL: at epoch 0" "$tmp/fail.txt"
# Only headers of include/layerfreeze/.
if grep -n '#include' "$root/examples/plan_in_ci/plan_in_ci.cpp" | grep -v -e '<layerfreeze/' -e '<[a-z]*>'; then
  echo "plan_in_ci includes a header outside include/layerfreeze/"; exit 1
fi
# A distributed trainer against the installed layerfreeze::distributed, started by the installed
# launcher, when the package has the component.
if [[ -f "$tmp/prefix/include/layerfreeze/distributed.hpp" ]]; then
  [[ -x "$tmp/trainer/trainer_distributed" ]] || { echo "layerfreeze::distributed is not exported"; exit 1; }
  "$tmp/prefix/bin/layerfreeze" launch --nproc 2 --timeout 120 -- "$tmp/trainer/trainer_distributed"
fi
# The installed CLI finds the installed adapter for a TorchScript model.
"$tmp/prefix/bin/layerfreeze" presets >/dev/null
