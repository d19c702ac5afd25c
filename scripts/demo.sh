#!/usr/bin/env bash
# The README's demo command: install what is missing, build, then show what layerfreeze does:
# a plan before any training (a built-in model; a real 141B checkpoint from its index and
# config.json alone), then a real fine-tuning run of a small character GPT under six
# strategies, each applied by the executor, with a comparison table (all numbers measured).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
lf=build/layerfreeze
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say layerfreeze plan preset:gradual_unfreeze --set total_epochs=4 --model builtin:gpt2 --format markdown
$lf plan preset:gradual_unfreeze --set total_epochs=4 --model builtin:gpt2 --format markdown 2>/dev/null
say layerfreeze plan preset:lp_lora --model tests/data/real-checkpoints/mixtral-8x22b "  # index + config.json, no shards"
$lf plan preset:lp_lora --model tests/data/real-checkpoints/mixtral-8x22b 2>/dev/null
say layerfreeze validate tests/data/three_mistakes.yaml
$lf validate tests/data/three_mistakes.yaml || echo "(exit code $?)"
if [[ -x build/finetune_demo ]]; then
  say build/finetune_demo   "# pretrain on GPL-3, fine-tune on MPL-2.0 under six strategies"
  build/finetune_demo "$@"
else
  echo "(the torch adapter was not built: no fine-tuning demo)"
fi
