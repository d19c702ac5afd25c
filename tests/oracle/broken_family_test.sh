#!/usr/bin/env bash
# The oracle must fail, naming the first differing tensor, when a family file is broken on purpose:
# a transposed shape, a misspelt name, a tie that transformers does not make.
# Usage: broken_family_test.sh PYTHON CLI ROOT
set -euo pipefail
python="$1" cli="$2" root="$3"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
oracle() { "$python" "$root/tests/oracle/transformers_oracle.py" "$cli" "$root" "$@"; }
expect_failure() {  # FAMILY CONFIG TEXT: the oracle exits 1 and prints TEXT
  local out
  if out=$(oracle --only "$2" --family "$1" 2>&1); then
    echo "the oracle accepted the broken family $1"; echo "$out"; exit 1
  fi
  grep -qF -- "$3" <<<"$out" || { echo "expected: $3"; echo "$out"; exit 1; }
}
llama="$root/rules/families/llama.yaml"
sed 's/\[mlp.up_proj.weight, \[intermediate_size, hidden_size\]/[mlp.up_proj.weight, [hidden_size, intermediate_size]/' \
  "$llama" >"$tmp/transposed.yaml"
expect_failure "$tmp/transposed.yaml" "$root/tests/data/configs/qwen3-0.6b.json" \
  "model.layers.0.mlp.up_proj.weight: layerfreeze [1024, 3072], transformers [3072, 1024]"
sed 's/post_attention_layernorm/post_attn_layernorm/' "$llama" >"$tmp/misspelt.yaml"
expect_failure "$tmp/misspelt.yaml" "$root/rules/models/llama2-7b.json" \
  "layerfreeze has model.layers.0.post_attn_layernorm.weight: not a parameter of LlamaForCausalLM"
sed 's/of: model.embed_tokens.weight, if: tie_word_embeddings}/of: model.embed_tokens.weight, if: false}/' \
  "$llama" >"$tmp/untied.yaml"
expect_failure "$tmp/untied.yaml" "$root/tests/data/configs/qwen3-0.6b.json" \
  "transformers has lm_head.weight [151936, 1024], which no name of layerfreeze's loads into"
# A wrong structure annotation: the output layer called embeddings; the whole ViT a connector.
printf '  embeddings: [%s]\n' "'lm_head\.weight'" | cat "$llama" - >"$tmp/wrong_ends.yaml"
expect_failure "$tmp/wrong_ends.yaml" "$root/rules/models/llama2-7b.json" \
  "lm_head.weight: transformers' output layer, layerfreeze's role embeddings"
# (the connector pattern ends `visual\.merger']`; it becomes `visual']`, the whole ViT)
sed "s/visual\\\\.merger'\]/visual']/" "$root/rules/families/qwen2_5_vl.yaml" >"$tmp/wrong_connector.yaml"
grep -q "connectors: .*visual'\]" "$tmp/wrong_connector.yaml" ||
  { echo "broken_family_test: the connector edit no longer applies to qwen2_5_vl.yaml"; exit 1; }
expect_failure "$tmp/wrong_connector.yaml" "$root/tests/data/configs/qwen2.5-vl-7b.json" \
  "transformers' module tree tower"
# And the shipped families pass on the same configs (the breakage, not the configs, fails).
oracle --only "$root/tests/data/configs/qwen3-0.6b.json" "$root/rules/models/llama2-7b.json" >/dev/null
echo "the oracle caught every broken family"
