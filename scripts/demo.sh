#!/usr/bin/env bash
# The README's demo command: install what is missing, build, and show what layerfreeze does
# before any GPU is spent: a model's discovered layers, then plans of shipped presets.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
lf=build/layerfreeze
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say layerfreeze inspect builtin:t5-small
$lf inspect builtin:t5-small | head -20
say layerfreeze plan preset:lp_lora --model builtin:llama2-7b
$lf plan preset:lp_lora --model builtin:llama2-7b
say layerfreeze plan preset:gradual_unfreeze --set total_epochs=10 --model builtin:gpt2 --epochs 10 --format markdown
$lf plan preset:gradual_unfreeze --set total_epochs=10 --model builtin:gpt2 --epochs 10 --format markdown 2>/dev/null
say layerfreeze validate tests/data/three_mistakes.yaml
$lf validate tests/data/three_mistakes.yaml || echo "(exit code $?)"
