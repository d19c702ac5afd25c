#!/usr/bin/env bash
# End-to-end checks of the layerfreeze binary: exit codes (0 ok, 1 invalid input, 2 usage),
# golden text of printers, the JSON contract. UPDATE_GOLDEN=1 rewrites the golden files.
set -u
bin="$(realpath "$1")"
root="$(realpath "$2")"
golden="$root/tests/cli/golden"
data="$root/tests/data"
torch_fixtures="${3:-}"  # set when the torch adapter is built: TorchScript files to plan
arch_fixtures="${4:-}"   # and the real-architecture fixtures (scripts/make_arch_fixtures.py)
pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect_exit CODE NAME -- ARGS...: runs the binary, checks the exit code; output in $tmp/out.
expect_exit() {
  local code=$1 name=$2
  shift 3
  "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [[ $got -eq $code ]]; then ok; else bad "$name: exit $got, expected $code"; sed 's/^/    /' "$tmp/err" | head -5; fi
}

# expect_golden NAME FILE: compares $tmp/out (stdout) or $tmp/err with a golden file.
expect_golden() {
  local name=$1 file=$2 src=${3:-out}
  if [[ -n "${UPDATE_GOLDEN:-}" ]]; then cp "$tmp/$src" "$golden/$file"; ok; return; fi
  if diff -u "$golden/$file" "$tmp/$src" >"$tmp/diff"; then ok; else bad "$name differs from $file"; head -40 "$tmp/diff"; fi
}

expect_contains() {
  local name=$1 text=$2 src=${3:-out}
  if grep -qF -- "$text" "$tmp/$src"; then ok; else bad "$name: no '$text' in $src"; head -20 "$tmp/$src"; fi
}

# Usage errors: exit 2.
expect_exit 2 "no subcommand" --
expect_exit 2 "unknown subcommand" -- frobnicate
expect_exit 2 "plan without --model" -- plan preset:lp_lora
expect_exit 2 "bad --format" -- plan preset:lp_lora --model builtin:gpt2 --format yaml
expect_exit 0 "help" -- --help

# Invalid input: exit 1 with file:line:col errors.
expect_exit 1 "three mistakes" -- validate tests/data/three_mistakes.yaml
expect_golden "three mistakes" validate_three_mistakes.txt err
if [[ $(grep -c ': error: ' "$tmp/err") -eq 3 ]]; then ok; else bad "three mistakes: expected 3 errors"; fi
expect_exit 1 "missing rules file" -- validate no/such/file.yaml
expect_exit 1 "unknown preset" -- plan preset:lp_lor --model builtin:gpt2
expect_contains "unknown preset" "did you mean 'lp_lora'?" err
expect_exit 1 "unknown model" -- plan preset:lp_lora --model builtin:gpt3
expect_exit 1 "n out of range" -- plan preset:freeze_first_n --set n=40 --model builtin:llama2-7b
expect_contains "n out of range" "first: 40 is out of range: builtin:llama2-7b has 32 layers (model.layers.0–31)" err
expect_exit 1 "undeclared --set" -- plan preset:lp_lora --set n=3 --model builtin:gpt2
expect_exit 1 "strict no-match" -- plan preset:bitfit --model builtin:llama2-7b --strict
expect_exit 0 "no-match warns" -- plan preset:bitfit --model builtin:llama2-7b
expect_exit 1 "missing model file" -- inspect /no/such/model.safetensors

# Valid input.
expect_exit 0 "validate presets" -- validate preset:lp_lora preset:lisa preset:gradual_unfreeze preset:ulmfit
expect_exit 0 "validate section" -- validate tests/data/experiment.yaml --section training.freeze
expect_exit 0 "plan lp_lora gpt2" -- plan preset:lp_lora --model builtin:gpt2
expect_golden "plan lp_lora gpt2" plan_lp_lora_gpt2.txt
expect_exit 0 "plan gradual gpt2" -- plan preset:gradual_unfreeze --set total_epochs=10 --model builtin:gpt2 --epochs 10
expect_golden "plan gradual gpt2" plan_gradual_unfreeze_gpt2.txt
expect_exit 0 "plan gradual markdown" -- plan preset:gradual_unfreeze --set total_epochs=4 --model builtin:t5-small --format markdown
expect_golden "plan gradual markdown" plan_gradual_unfreeze_t5.md
expect_exit 0 "plan section" -- plan tests/data/experiment.yaml --section training.freeze --model builtin:gpt2 --epochs 6
expect_golden "plan section" plan_experiment_section.txt
expect_exit 0 "plan lisa" -- plan preset:lisa --model builtin:llama2-7b --epochs 2 --steps-per-epoch 40 --optimizer sgd-momentum
expect_golden "plan lisa" plan_lisa_llama.txt
# Metric-triggered stages (docs/RULES.md, "Metric triggers"): windows in every view; a dry run
# under assumed plateaus or a recorded history; the trigger is part of the lock's identity.
plateau=examples/strategies/unfreeze_on_plateau.yaml
expect_exit 0 "plan plateau" -- plan $plateau --model builtin:llama2-7b --epochs 10
expect_golden "plan plateau" plan_plateau_llama2.txt
expect_exit 0 "plan plateau assumed" -- plan $plateau --model builtin:llama2-7b --assume 'val_loss: plateaus at epochs 3, 7'
expect_golden "plan plateau assumed" plan_plateau_llama2_assumed.txt
expect_exit 0 "plan plateau history" -- plan $plateau --model builtin:llama2-7b --metrics tests/data/metrics/plateau_history.txt --format markdown
expect_golden "plan plateau history" plan_plateau_llama2_history.md
expect_exit 0 "plan plateau json" -- plan $plateau --model builtin:llama2-7b --format json
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); m=j["metric_stages"]; assert [s["placed"] for s in m]==["latest","waiting"] and m[0]["window"]=={"earliest":1,"latest":6}, m' "$tmp/out" && ok || bad "plan plateau json: metric_stages"
expect_exit 0 "explain plateau" -- explain $plateau --model builtin:llama2-7b --param model.layers.30.mlp.up_proj.weight --epoch 7
expect_contains "explain plateau" "stage 'everything' on val_loss plateau: val_loss plateau (min, patience 2, min_delta 0.01) · window from epoch 2, no bound · waits for a plateau"
expect_exit 0 "plan plateau svg" -- plan $plateau --model builtin:llama2-7b --format svg
expect_contains "plan plateau svg" 'class="lf-window"'
mkdir -p "$tmp/pl" && cp $plateau "$tmp/pl/plateau.yaml"
expect_exit 0 "plateau lock" -- plan "$tmp/pl/plateau.yaml" --model builtin:llama2-7b --lock "$tmp/pl/plateau.lock"
expect_exit 0 "plateau check" -- check "$tmp/pl/plateau.lock"
sed -i 's/patience: {type: int, default: 2/patience: {type: int, default: 3/' "$tmp/pl/plateau.yaml"
expect_exit 1 "plateau check after patience changed" -- check "$tmp/pl/plateau.lock"
expect_contains "plateau check after patience changed" "patience: 2 in" 

expect_exit 0 "inspect gpt2" -- inspect builtin:gpt2
expect_golden "inspect gpt2" inspect_gpt2.txt
# `--model` as `plan` takes it: the same output.
expect_exit 0 "inspect --model gpt2" -- inspect --model builtin:gpt2
expect_golden "inspect --model gpt2" inspect_gpt2.txt
# A vision-language model: trunk, tower and connector in data-flow order (docs/ARCHITECTURES.md).
# (From the project's root, so the golden names the model by a relative path.)
pushd "$root" >/dev/null
vlm="tests/data/real-checkpoints/olmocr-qwen2-vl-7b"
expect_exit 0 "plan vlm" -- plan preset:gradual_unfreeze --set total_epochs=3 --model "$vlm"
expect_golden "plan vlm" plan_gradual_unfreeze_olmocr.txt
expect_exit 0 "plan vlm markdown" -- plan preset:lp_lora --model "$vlm" --format markdown
expect_golden "plan vlm markdown" plan_lp_lora_olmocr.md
# The picture (docs/CLI.md): golden bytes; --svg beside markdown links it.
expect_exit 0 "plan svg" -- plan preset:gradual_unfreeze --set total_epochs=6 --model builtin:llama2-7b --format svg
expect_golden "plan svg" plan_gradual_unfreeze_llama2.svg
expect_exit 0 "plan vlm svg" -- plan preset:gradual_unfreeze --set total_epochs=3 --model "$vlm" --format svg
expect_golden "plan vlm svg" plan_gradual_unfreeze_olmocr.svg
expect_exit 0 "plan --svg" -- plan preset:lp_lora --model builtin:gpt2 --format markdown --svg "$tmp/lp.svg"
expect_contains "plan --svg" "![the plan as a picture]($tmp/lp.svg)"
if grep -q '<svg xmlns' "$tmp/lp.svg"; then ok; else bad "plan --svg: no SVG in $tmp/lp.svg"; fi
# The README's picture (docs/gradual_unfreeze_gpt2.svg) cannot go stale: it is this output.
expect_exit 0 "readme picture" -- plan preset:gradual_unfreeze --set total_epochs=6 --model builtin:gpt2 --format svg
if [[ -n "${UPDATE_GOLDEN:-}" ]]; then cp "$tmp/out" "$root/docs/gradual_unfreeze_gpt2.svg"; fi
if cmp -s "$tmp/out" "$root/docs/gradual_unfreeze_gpt2.svg"; then ok; else bad "docs/gradual_unfreeze_gpt2.svg is stale (UPDATE_GOLDEN=1 rewrites it)"; fi
expect_exit 1 "diff svg" -- diff preset:lp_lora preset:freeze_first_n --set n=8 --model builtin:gpt2 --format svg
expect_golden "diff svg" diff_lp_lora_freeze_first_n_gpt2.svg
expect_exit 2 "diff bad --format" -- diff preset:lp_lora preset:freeze_first_n --model builtin:gpt2 --format pdf
expect_exit 1 "plan --svg unwritable" -- plan preset:lp_lora --model builtin:gpt2 --svg /nonexistent/dir/x.svg
expect_exit 0 "explain vlm" -- explain preset:lp_lora --model "$vlm" --param visual.blocks.3.attn.qkv.weight
expect_contains "explain vlm" "role: tower (vision, \`visual\`, 32 layers; its layer 3 in stack visual.blocks"
popd >/dev/null
expect_exit 0 "inspect json" -- inspect builtin:resnet50 --format json
cp "$tmp/out" "$tmp/resnet.json"
expect_exit 0 "plan from manifest" -- plan preset:freeze_first_n --set n=2 --model "$tmp/resnet.json"
expect_contains "plan from manifest" "Layer 0-1:  FROZEN  (1.4M params)"
expect_exit 0 "explain" -- explain preset:gradual_unfreeze --set total_epochs=10 --model builtin:gpt2 --param lm_head.weight --epoch 3
expect_golden "explain" explain_lm_head.txt
expect_exit 1 "explain unknown param" -- explain preset:lp_lora --model builtin:gpt2 --param transformer.h.0.attn.c_atn.weight
expect_contains "explain unknown param" "did you mean 'transformer.h.0.attn.c_attn.weight'?" err
expect_exit 1 "diff" -- diff preset:lp_lora preset:gradual_unfreeze --set total_epochs=4 --model builtin:gpt2 --epochs 4
expect_golden "diff" diff_lp_lora_gradual.txt
expect_exit 1 "diff with a set only one declares" -- diff preset:lp_lora preset:freeze_all --set freeze_ratio=0.2 --model builtin:gpt2
expect_exit 1 "diff with a set neither declares" -- diff preset:lp_lora preset:freeze_all --set nope=1 --model builtin:gpt2
# diff's exit code: 0 for one plan, 1 when a trainer would run them differently.
expect_exit 0 "diff same" -- diff preset:lp_lora preset:lp_lora --model builtin:gpt2
expect_contains "diff same" "the two plans are the same (fingerprint"
printf 'extends: preset:ulmfit\nwith: {lr_decay: 2.6}\n' > "$tmp/u26.yaml"
printf 'extends: preset:ulmfit\nwith: {lr_decay: 5.0}\n' > "$tmp/u50.yaml"
expect_exit 1 "diff lr only" -- diff "$tmp/u26.yaml" "$tmp/u50.yaml" --model builtin:gpt2
expect_contains "diff lr only" "policy lr_decay: 2.6 in A, 5.0 in B"
expect_exit 1 "diff lr only (svg)" -- diff "$tmp/u26.yaml" "$tmp/u50.yaml" --model builtin:gpt2 --format svg
expect_contains "diff lr only (svg)" '<text class="lf-also" x="28" y="'
expect_contains "diff lr only (svg)" "policy lr_decay: 2.6 in A, 5.0 in B"
expect_exit 1 "diff lr only (html)" -- diff "$tmp/u26.yaml" "$tmp/u50.yaml" --model builtin:gpt2 --format html
expect_contains "diff lr only (html)" "policy lr_decay: 2.6 in A, 5.0 in B"
printf 'extends: preset:lp_lora\nwith: {freeze_ratio: 0.51}\n' > "$tmp/lp51.yaml"
expect_exit 1 "diff bound parameter" -- diff preset:lp_lora "$tmp/lp51.yaml" --model builtin:gpt2
expect_contains "diff bound parameter" "the two plans freeze the same parameters at every time shown"

# What reading the model warns about (its config says 30 layers, the index has 28) reaches every
# format of plan, and --strict refuses it.
mismatch="$tmp/mismatch"
mkdir -p "$mismatch"
cp "$data/real-checkpoints/molmo-7b-d-nf4/model.safetensors.index.json" "$mismatch/"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["num_hidden_layers"] = 30; json.dump(c, open(sys.argv[2], "w"))' \
  "$data/real-checkpoints/molmo-7b-d-nf4/config.json" "$mismatch/config.json"
for f in text json markdown svg html; do
  expect_exit 0 "config mismatch ($f)" -- plan preset:lp_lora --model "$mismatch" --format "$f"
  expect_contains "config mismatch ($f)" "says num_hidden_layers = 30, but the trunk has 28 layers and no split"
done
expect_exit 0 "config mismatch (json warnings)" -- plan preset:lp_lora --model "$mismatch" --format json
if python3 -c 'import json, sys; w = json.load(open(sys.argv[1]))["warnings"]; sys.exit(0 if any("config-layers-mismatch" in x or "num_hidden_layers = 30" in x for x in map(str, w)) else 1)' "$tmp/out"; then ok; else bad "config mismatch: not in the JSON warnings"; fi
expect_exit 1 "config mismatch --strict" -- plan preset:lp_lora --model "$mismatch" --strict
expect_contains "config mismatch --strict" "error: config '" err
expect_exit 1 "config mismatch validate --strict" -- validate preset:lp_lora --model "$mismatch" --strict
# validate --model names a dead selector on stdout, not only among the warnings.
expect_exit 0 "validate dead selector" -- validate preset:bitfit --model builtin:llama2-7b
expect_contains "validate dead selector" "1 selector selects nothing of builtin:llama2-7b"
expect_exit 1 "validate dead selector --strict" -- validate preset:bitfit --model builtin:llama2-7b --strict
expect_exit 0 "version" -- --version
expect_contains "version" "layerfreeze $(sed -n 's/^project(layerfreeze VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"

expect_exit 0 "presets" -- presets
expect_contains "presets" "preset:lisa"
expect_exit 0 "schema" -- schema
expect_contains "schema" '"$schema"'
expect_exit 0 "real index" -- plan preset:freeze_except_last_n --set n=4 --model tests/data/real-checkpoints/mixtral-8x22b/model.safetensors.index.json
expect_contains "real index" "56 layers (model.layers.0–55)"
# The config.json beside the index gives every shape (family mixtral).
expect_contains "real index" "140,620,634,112 parameters (140.6B)"
mkdir -p "$tmp/index-alone" && cp tests/data/real-checkpoints/mixtral-8x22b/model.safetensors.index.json "$tmp/index-alone/"
expect_exit 0 "index without config" -- plan preset:freeze_except_last_n --set n=4 --model "$tmp/index-alone/model.safetensors.index.json"
expect_contains "index without config" "shapes unknown"
expect_exit 0 "index with --config" -- plan preset:freeze_except_last_n --set n=4 --model "$tmp/index-alone/model.safetensors.index.json" --config tests/data/real-checkpoints/mixtral-8x22b/config.json
expect_contains "index with --config" "140,620,634,112 parameters (140.6B)"
expect_exit 0 "checkpoint folder" -- plan preset:lp_lora --model tests/data/real-checkpoints/mixtral-8x22b
expect_contains "checkpoint folder" "memory (adamw): gradients 140.6 GB"
expect_exit 0 "config alone" -- plan preset:lp_lora --model tests/data/real-checkpoints/mixtral-8x22b/config.json
expect_contains "config alone" "140,620,634,112 parameters (140.6B)"
expect_exit 1 "config of an unknown family alone" -- plan preset:lp_lora --model tests/data/real-checkpoints/molmo-7b-d-nf4/config.json
expect_contains "config of an unknown family alone" "no model family for model_type 'molmo'" err
expect_contains "config of an unknown family alone" "known model types: bart, bert, bloom," err
expect_exit 0 "a user's family file" -- plan preset:freeze_first_n --set n=2 --model tests/data/families/tiny_mlp_config.json --family tests/data/families/tiny_mlp.yaml
expect_contains "a user's family file" "TinyMlp · 3 layers (blocks.0–2)"
expect_exit 1 "merge-conflict index" -- inspect tests/data/bad-inputs/bloom-index-with-merge-conflict.json
expect_contains "merge-conflict index" "has text after its JSON value, at 2:1 (character 60304): '======='" err
expect_exit 0 "inspect tie (granite)" -- inspect tests/data/real-checkpoints/granite-3.1-1b-a400m
expect_contains "inspect tie (granite)" "model.embed_tokens.weight (embeddings) = lm_head.weight (head)"
expect_exit 0 "inspect tie (bloom)" -- inspect tests/data/real-checkpoints/bloom-176b
expect_contains "inspect tie (bloom)" "word_embeddings.weight (embeddings) = lm_head.weight (head)"
expect_exit 0 "inspect tie (falcon)" -- inspect tests/data/real-checkpoints/falcon-180b
expect_contains "inspect tie (falcon)" "transformer.word_embeddings.weight (embeddings) = lm_head.weight (head)"
expect_exit 0 "inspect quantized (molmo)" -- inspect tests/data/real-checkpoints/molmo-7b-d-nf4
expect_contains "inspect quantized (molmo)" "quantization metadata (bitsandbytes): 336"
expect_contains "inspect quantized (molmo)" "quantized: bitsandbytes nf4"
expect_exit 0 "inspect buffers (llama-65b)" -- inspect tests/data/real-checkpoints/llama-65b
expect_contains "inspect buffers (llama-65b)" "buffer (rotary frequencies): 80"

# Every example strategy validates and plans on the model its header names.
for f in examples/strategies/*.yaml; do
  expect_exit 0 "validate $f" -- validate "$f"
  cmd=$(grep -m1 -E '^#   layerfreeze plan ' "$f" | sed 's/^#   layerfreeze //')
  # shellcheck disable=SC2086
  expect_exit 0 "plan $f" -- $cmd
done

# TorchScript models, through the dlopen'ed adapter (only when it is built).
if [[ -n "$torch_fixtures" ]]; then
  expect_exit 0 "plan torchscript" -- plan preset:gradual_unfreeze --set total_epochs=4 --model "$torch_fixtures/gpt2_tiny.pt"
  expect_contains "plan torchscript" "GPT2LMHeadModel · 6 layers (transformer.h.0–5) · 76 tensors · 20,992 parameters"
  expect_exit 0 "inspect torchscript" -- inspect "$torch_fixtures/resnet_tiny.pt"
  expect_contains "inspect torchscript" "stack layer: layers 0–2 · key 'layer#' · pattern 'layer#'"
  LAYERFREEZE_TORCH_ADAPTER=/nonexistent/liblayerfreeze_torch.so expect_exit 1 "torchscript without the adapter" -- \
    inspect "$torch_fixtures/resnet_tiny.pt"
  expect_contains "torchscript without the adapter" "[torch-adapter-missing]" err
  echo "garbage" > "$tmp/broken.pt"
  expect_exit 1 "broken torchscript" -- inspect "$tmp/broken.pt"
  expect_contains "broken torchscript" "cannot load TorchScript model" err
fi

# Every real-architecture fixture, from each source: the JSON plan lists roles and layers.
if [[ -n "$arch_fixtures" ]]; then
  for pt in "$arch_fixtures"/*.pt; do
    family=$(basename "$pt" .pt)
    for model in "$pt" "$arch_fixtures/$family.safetensors" "$arch_fixtures/$family-sharded/model.safetensors.index.json"; do
      expect_exit 0 "plan lp_lora $family ($(basename "$model"))" -- plan preset:lp_lora --model "$model" --format json
      expect_contains "plan lp_lora $family" '"role": "layer"'
      expect_contains "plan lp_lora $family" '"layer": 0'
    done
  done
fi

# Distributed lint: the data-parallel hazards of a plan, in every format.
expect_exit 0 "plan distributed" -- plan preset:gradual_unfreeze --set total_epochs=4 --model builtin:gpt2 --distributed
expect_golden "plan distributed" plan_gradual_distributed_gpt2.txt
expect_exit 0 "plan distributed json" -- plan preset:lp_lora --model builtin:llama2-7b --format json --distributed
expect_contains "plan distributed json" '[checkpoint-frozen-input]'
expect_contains "plan distributed json" '"code": "checkpoint-frozen-input"'
expect_contains "plan distributed json" 'everything before model.layers.16 (the first trainable layer) is frozen' err
expect_exit 0 "plan without --distributed" -- plan preset:lisa --model builtin:gpt2
if grep -q 'ddp-trainable-set-changes' "$tmp/out"; then bad "the lint runs only with --distributed"; else ok; fi

# launch: the environment of each rank, prefixed output, exit codes, timeouts.
expect_exit 0 "launch env" -- launch --nproc 3 -- sh -c 'echo "$RANK/$WORLD_SIZE/$LOCAL_RANK $MASTER_ADDR"'
for r in 0 1 2; do expect_contains "launch env" "[rank $r] $r/3/$r 127.0.0.1"; done
expect_exit 5 "launch exit code" -- launch --nproc 2 --grace 0 -- sh -c '[ $RANK = 1 ] && exit 5; sleep 30'
expect_contains "launch exit code" "rank 1 failed (exit 5)" err
expect_contains "launch exit code" "rank 0 was stopped" err
expect_exit 124 "launch timeout" -- launch --nproc 2 --timeout 1 -- sleep 30
expect_contains "launch timeout" "the job exceeded --timeout 1 s" err
expect_exit 0 "launch no prefix" -- launch --nproc 1 --no-prefix -- echo plain
expect_golden "launch no prefix" launch_no_prefix.txt
expect_exit 0 "launch multi-node rank" -- launch --nproc 2 --nnodes 2 --node-rank 1 --master-port 29999 --no-prefix -- sh -c 'echo $RANK'
if [[ "$(sort "$tmp/out" | tr '\n' ' ')" == "2 3 " ]]; then ok; else bad "node 1 of 2 runs ranks 2 and 3"; fi
# A signal to the launcher reaches every rank (they run in their own process groups).
for sig in INT TERM; do
  marker="layerfreeze-launch-test-$$-$sig"
  "$bin" launch --nproc 2 -- sh -c ": $marker; sleep 30" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  sleep 0.5
  kill -$sig $pid
  wait $pid
  got=$?
  sleep 0.2
  if [[ $got -eq $((128 + $(kill -l $sig))) ]] && ! pgrep -f "$marker" >/dev/null; then ok
  else bad "launch SIG$sig: exit $got, ranks left: $(pgrep -f "$marker" | tr '\n' ' ')"; pkill -f "$marker"; fi
done
expect_exit 2 "launch without a command" -- launch --nproc 2
expect_exit 2 "launch node rank" -- launch --nproc 2 --nnodes 2 --node-rank 2 --master-port 29999 -- true
expect_exit 2 "launch multi-node needs a port" -- launch --nproc 2 --nnodes 2 -- true
expect_exit 127 "launch missing program" -- launch --nproc 1 -- /no/such/program
expect_contains "launch missing program" "cannot run '/no/such/program'" err

# The JSON contract.
expect_exit 0 "plan json" -- plan preset:lp_lora --model builtin:llama2-7b --format json
for key in '"format": "layerfreeze.plan/1"' '"num_layers": 32' '"numel": 6738415616' '"parameters": 291' \
           '"frozen_numel": 3369205760' '"fingerprint": "' '"role": "embeddings"' '"aliases": []'; do
  expect_contains "plan json" "$key"
done

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
