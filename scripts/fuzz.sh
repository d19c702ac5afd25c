#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (+ ASan/UBSan) in build-fuzz/ and runs each for
# SECONDS (default 60). Usage: scripts/fuzz.sh [SECONDS] [TARGET...]  (targets: rules safetensors
# index manifest config lock fts). Exit non-zero on any crash, leak, timeout or sanitizer report.
# The pass is deterministic: libFuzzer's random seed is fixed (LAYERFREEZE_FUZZ_SEED, default 1)
# and the corpus starts from the seeds only (earlier runs' finds are dropped), so CI draws the same inputs every run; set
# LAYERFREEZE_FUZZ_SEED=0 to let libFuzzer pick one (exploring, not CI).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
(( ${#targets[@]} )) || targets=(rules safetensors index manifest config lock fts metrics)
scripts/install-deps.sh >/dev/null
command -v clang++ >/dev/null || { sudo=""; (( EUID )) && sudo=sudo; $sudo apt-get install -y -qq clang libclang-rt-dev >/dev/null; }
b=build-fuzz
cmake -S . -B $b -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAYERFREEZE_FUZZ=ON \
      -DLAYERFREEZE_WITH_TORCH=OFF -DLAYERFREEZE_BUILD_TESTS=OFF -DLAYERFREEZE_BUILD_BENCH=OFF \
      -DLAYERFREEZE_UNITY_BUILD=ON >/dev/null
cmake --build $b --target layerfreeze "${targets[@]/#/fuzz_}" >/dev/null
# Seed corpora: the shipped presets, examples and test files; model headers written by the CLI.
seeds=$b/seeds
mkdir -p $seeds/rules $seeds/safetensors $seeds/index $seeds/manifest $seeds/config $seeds/lock $seeds/fts $seeds/metrics $b/crashes
cp rules/*.yaml examples/strategies/*.yaml tests/data/*.yaml fuzz/corpus/rules/* $seeds/rules/ 2>/dev/null || true
cp fuzz/corpus/safetensors/* $seeds/safetensors/ 2>/dev/null || true
cp fuzz/corpus/index/* tests/data/real-checkpoints/*/model.safetensors.index.json $seeds/index/ 2>/dev/null || true
cp fuzz/corpus/config/* tests/data/real-checkpoints/*/config.json rules/models/*.json $seeds/config/ 2>/dev/null || true
for m in gpt2 t5-small resnet50; do $b/layerfreeze inspect builtin:$m --format json > $seeds/manifest/$m.json; done
cp fuzz/corpus/lock/* $seeds/lock/ 2>/dev/null || true
cp fuzz/corpus/fts/* $seeds/fts/ 2>/dev/null || true
cp fuzz/corpus/metrics/* $seeds/metrics/ 2>/dev/null || true
$b/layerfreeze plan preset:gradual_unfreeze --set total_epochs=4 --model builtin:gpt2 --lock $seeds/lock/gradual.lock >/dev/null
$b/layerfreeze plan preset:lp_lora --model builtin:t5-small --lock $seeds/lock/lp_lora.lock >/dev/null
status=0
for t in "${targets[@]}"; do
  [[ "${LAYERFREEZE_FUZZ_SEED:-1}" != 0 ]] && rm -rf $b/corpus-$t  # deterministic: seeds only
  mkdir -p $b/corpus-$t
  echo "fuzz_$t: ${secs}s"
  if ! ASAN_OPTIONS=detect_leaks=1 $b/fuzz_$t -seed="${LAYERFREEZE_FUZZ_SEED:-1}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix=$b/crashes/$t- -print_final_stats=1 $b/corpus-$t $seeds/$t 2> $b/fuzz_$t.log; then
    echo "fuzz_$t FAILED: see $b/fuzz_$t.log and $b/crashes/"; tail -30 $b/fuzz_$t.log; status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $b/fuzz_$t.log | sed "s/^/  /"
  fi
done
exit $status
