// ModelConfig: a checkpoint's config.json, read as data: its architecture, model type, dtype,
// quantization and every value (nested keys dotted: `vision_config.depth`), for model families
// (sources/family.hpp) and for the checks a plan makes against discovery.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "core/expr.hpp"
#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

struct ModelConfig {
  std::string path;          // where it was read from
  std::string model_type;    // "llama"; "" when absent
  std::string architecture;  // architectures[0]; "" when absent
  std::string dtype;         // torch_dtype / dtype ("bfloat16"); "" when absent
  std::string quantization;  // "bitsandbytes nf4", "gptq 4-bit", ...; "" when not quantized
  Scope values;              // every scalar, null and list of scalars; nested keys dotted

  const Value* get(const std::string& key) const;
  /// An integer value, when the key holds one.
  std::optional<int64_t> integer(const std::string& key) const;
  /// `tie_word_embeddings` as written, or nullopt when absent.
  std::optional<bool> tie_word_embeddings() const;
  /// What the config says of the layer counts: (key, count) for the trunk's and each tower's
  /// stack, from `num_hidden_layers`, `n_layer`, `num_layers`, `text_config.*`,
  /// `vision_config.depth` / `num_hidden_layers`, encoder/decoder counts.
  std::vector<std::pair<std::string, int64_t>> layer_counts() const;
  /// Routed experts per MoE layer: `num_local_experts` (Mixtral, GPT-OSS, Granite), `num_experts`
  /// (Qwen-MoE), `n_routed_experts` (DeepSeek), also under `text_config.`; nullopt when absent.
  std::optional<int64_t> expert_count() const;
  /// Multi-token-prediction blocks the config states (`num_nextn_predict_layers`,
  /// `mtp_num_hidden_layers`, …, also under `text_config`); 0 when it says nothing.
  int64_t mtp_layers() const;
  /// Dropout probabilities above 0 the config sets (`attention_dropout`, `hidden_dropout_prob`,
  /// `resid_pdrop`, …: a key whose last part names dropout or `pdrop`), dotted key and value.
  std::vector<std::pair<std::string, double>> dropouts() const;
  /// The modalities besides text that the config describes: "vision" for a `vision_config`
  /// (or `visual`, `vision_tower_config`), "audio" for an `audio_config` (or `speech_config`).
  std::vector<std::string> modalities() const;
};

/// Reads `path` (config.json). Errors name the file and the cause: not JSON, trailing text, not
/// an object, wrong types of the keys it relies on.
std::optional<ModelConfig> read_model_config(const std::string& path, Diagnostics& diags);
std::optional<ModelConfig> model_config_from_json(const nlohmann::json& j, const std::string& path,
                                                  Diagnostics& diags);

/// True for a JSON object that looks like a model config (has `model_type` or `architectures`
/// and no `weight_map`).
bool looks_like_config(const nlohmann::json& j);

}  // namespace layerfreeze
