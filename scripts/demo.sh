#!/usr/bin/env bash
# The README's demo command: install what is missing, build, then show what layerfreeze does:
# a plan before any training (a built-in model; a real 141B checkpoint from its index and
# config.json alone), then a real fine-tuning run of a small character GPT under six
# strategies, each applied by the executor, with a comparison table (all numbers measured).
set -euo pipefail
cd "$(dirname "$0")/.."
# The build can take minutes on a fresh machine: show its progress on one line, keep its log.
log=$(mktemp -t layerfreeze-build.XXXXXX.log)
echo "building layerfreeze (a few minutes on 2 cores the first time; log: $log)" >&2
if ! scripts/build.sh 2>&1 | tee "$log" | while IFS= read -r line; do
       if [[ $line =~ ^\[([0-9]+)/([0-9]+)\]\ (.*)$ ]]; then
         printf '\r\033[K  [%s/%s] %.70s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" >&2
       elif [[ $line == install-deps:* ]]; then
         printf '\r\033[K  %s\n' "$line" >&2
       fi
     done; then
  printf '\n' >&2
  tail -30 "$log" >&2
  echo "demo: the build failed (full log: $log)" >&2
  exit 1
fi
printf '\r\033[K  built\n' >&2
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
