#!/usr/bin/env bash
# examples/plateau/plateau_trainer.cpp, which unfreezes on validation-loss plateaus and reloads
# the best weights at each transition: a run stopped after epoch K (every K) and started again on
# its folder ends with the same weights, bit for bit, as the run never stopped; and the stages do
# fire on plateaus (the test would prove nothing if they did not).
set -euo pipefail
trainer="$1"
root="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
epochs=8
args=(--rules "$root/examples/strategies/unfreeze_on_plateau.yaml" --set top_layers=2
      --set patience=1 --set min_delta=0.002 --epochs $epochs)
"$trainer" "${args[@]}" --workdir "$tmp/whole" >"$tmp/whole.log"
want=$(grep '^final weights' "$tmp/whole.log")
grep -q "on val_loss plateau" "$tmp/whole.log" ||
  { echo "no metric stage fired in the uninterrupted run:"; cat "$tmp/whole.log"; exit 1; }
for k in $(seq 1 $((epochs - 1))); do
  "$trainer" "${args[@]}" --workdir "$tmp/k$k" --stop-after "$k" >"$tmp/k$k.log"
  "$trainer" "${args[@]}" --workdir "$tmp/k$k" >>"$tmp/k$k.log"
  got=$(grep '^final weights' "$tmp/k$k.log")
  if [[ "$got" != "$want" ]]; then
    echo "stopped after epoch $((k - 1)) and resumed: $got, uninterrupted: $want"
    diff "$tmp/whole.log" "$tmp/k$k.log" || true
    exit 1
  fi
done
echo "resumed after each of epochs 0-$((epochs - 2)): the same weights as the uninterrupted run"
cat "$tmp/whole.log"
