// A checkpoint as a whole: the tensors a header lists (safetensors file or index) together with
// the config.json beside them. The config names the architecture, states the layer counts,
// decides ties (`tie_word_embeddings`, or the config class's default), and through a model
// family (sources/family.hpp) gives every shape — so an index without its shards, or a config
// alone, plans with exact parameter counts.
#pragma once

#include <optional>
#include <string>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"
#include "sources/model_config.hpp"

namespace layerfreeze {

class Family;

/// Combines `header` (may be nullopt: a config alone) with `config`. With a config alone, a
/// model type no family covers is an error listing the known ones. `family`, when given, is used
/// whatever the config's model type (a user's own family file).
std::optional<ModelFacts> apply_config(std::optional<ModelFacts> header, const ModelConfig& config,
                                       Diagnostics& diags, const Family* family = nullptr);

/// The config.json that goes with a model file: `explicit_path` when given, else the one beside
/// `model_path`, else "".
std::string config_beside(const std::string& model_path);

}  // namespace layerfreeze
