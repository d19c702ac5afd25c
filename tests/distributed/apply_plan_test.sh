#!/usr/bin/env bash
# The JSON plan in a Python job: examples/distributed/apply_plan.py (run by Debian's python3 with
# python3-torch) applies `layerfreeze plan --format json` to the TorchScript model itself, at
# several epochs, and its frozen tensors and trainable count must equal the plan's.
# usage: apply_plan_test.sh LAYERFREEZE ROOT ARCH_FIXTURES
set -u
bin="$(realpath "$1")"
root="$(realpath "$2")"
fixtures="$(realpath "$3")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
check() {  # check MODEL EPOCHS PRESET [--set ...]
  local model=$1 epochs=$2
  shift 2
  if ! "$bin" plan "$@" --model "$model" --epochs "$epochs" --format json >"$tmp/plan.json" 2>"$tmp/err"; then
    fail=$((fail + 1)); echo "FAIL: plan $* on $model"; head -5 "$tmp/err"; return
  fi
  if /usr/bin/python3 "$root/examples/distributed/apply_plan.py" "$tmp/plan.json" "$model" $(seq 0 $((epochs - 1))) \
       >"$tmp/out" 2>&1; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL: apply_plan.py $* on $(basename "$model")"; head -5 "$tmp/out"
  fi
}
for family in gpt2 llama bert t5 mixtral resnet18 vit; do
  model="$fixtures/$family.pt"
  [[ -f $model ]] || { fail=$((fail + 1)); echo "FAIL: no fixture $model"; continue; }
  check "$model" 1 preset:lp_lora --distributed
  check "$model" 4 preset:gradual_unfreeze --set total_epochs=4
done
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
