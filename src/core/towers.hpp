// Towers and connectors: the part of layer discovery that tells a multimodal model's trunk (the
// stacks the head reads) from its towers (vision or audio encoders) and the connectors that feed
// a tower's output into the trunk (docs/ARCHITECTURES.md, "Multimodal models").
//
// A tower is found by name (`visual`, `vision_tower`, `vpm`, … in rules/discovery.yaml), by the
// config (a stack whose layer count is not the language model's, in a config with a
// `vision_config`), or by a rules file's `discovery: trunk:` (every other stack is a tower).
// Towers exist only where a connector feeds them into a trunk that remains: a dual encoder read in
// parallel (CLIP) has no connector and keeps both stacks in its trunk, as a vision-only model
// keeps its one stack.
#pragma once

#include <string>
#include <vector>

#include "core/layer_discovery.hpp"
#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

/// A stack discovery found, before it knows which part of the model it belongs to.
struct StackCandidate {
  std::string container;  // "visual.blocks"
  int32_t num_layers = 0;
};

struct ModalitySplit {
  std::vector<Tower> towers;          // root, modality, found_by; in order of first parameter
  std::vector<Connector> connectors;  // in order of first parameter
  /// Per stack candidate: its tower, -1 for the trunk, kDissolved for a stack inside a
  /// connector (a projector's own `layers.N`: connector parameters, not layers).
  std::vector<int32_t> stack_tower;
  static constexpr int32_t kDissolved = -2;
  /// Per parameter: its tower or connector, -1 for none. Empty when the model has no tower.
  std::vector<int32_t> param_tower, param_connector;
  std::vector<std::string> notes;
  bool multimodal() const { return !towers.empty(); }
};

/// Splits `inv` (its parameter names, config modalities and layer counts) into trunk, towers
/// and connectors. Bad patterns are errors in `diags`.
ModalitySplit split_modalities(const Inventory& inv, const std::vector<StackCandidate>& stacks,
                               const DiscoveryPatterns& patterns, Diagnostics& diags);

/// The language model's layer count the config states (its key and value), or null: the first
/// of Inventory::config_layers that is not a vision or audio section's.
const std::pair<std::string, int64_t>* text_layer_count(const Inventory& inv);

/// True when the config counts an encoder and a decoder apart (`decoder_layers`,
/// `num_decoder_layers`).
bool config_counts_decoder(const Inventory& inv);
/// True for a config count of a vision or audio part (`vision_config.depth`, `audio_config.…`).
bool is_modality_count(const std::string& key);
/// The length of `name`'s part above its first all-digit component ("model.layers" of
/// "model.layers.7.mlp.w"; the whole name when it has none).
size_t above_first_index(const std::string& name);

/// True when `name` is `root` itself or a name under it (`root.…`).
bool at_or_under(const std::string& name, const std::string& root);

}  // namespace layerfreeze
