// What each model source reads, as facts (include/layerfreeze/model_facts.hpp): the public
// loaders in include/layerfreeze/model_source.hpp wrap these into an Inventory with no structure
// yet. Sources build facts only; discovery makes the structure from them later.
#pragma once

#include <optional>
#include <string>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/model_facts.hpp"

namespace layerfreeze {

std::optional<ModelFacts> read_safetensors(const std::string& path, Diagnostics& diags);
std::optional<ModelFacts> read_safetensors_index(const std::string& path, Diagnostics& diags);
std::optional<ModelFacts> read_manifest(const std::string& path, Diagnostics& diags);
std::optional<ModelFacts> parse_manifest_facts(const std::string& text, const std::string& origin,
                                               Diagnostics& diags);
std::optional<ModelFacts> builtin_facts(const std::string& name);

/// The dtype name ("float32") of a safetensors dtype code ("F32"); "" for none.
std::string dtype_of_safetensors_code(const std::string& code);

}  // namespace layerfreeze
