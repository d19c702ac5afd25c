// Layer discovery: finds the repeated blocks of a model from its parameter names and gives
// every parameter a role (docs/ARCHITECTURES.md). The patterns are data (rules/discovery.yaml),
// extended or replaced by a rules file's `discovery:` key.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/discovery_patterns.hpp"
#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

/// The structure of a model from its facts alone: stacks, layers, roles, anchors, towers,
/// connectors, experts and the data-flow order. Bad patterns are errors in `diags`; a model
/// without repeated blocks gets a note, not an error (layer selectors report it later).
Structure discover_structure(std::shared_ptr<const ModelFacts> facts,
                             const DiscoveryPatterns& patterns, Diagnostics& diags);

/// `inv` joined with the structure discovered from its facts (whatever structure it had is
/// dropped first): discover_structure, in place.
void discover_layers(Inventory& inv, const DiscoveryPatterns& patterns, Diagnostics& diags);

}  // namespace layerfreeze

namespace layerfreeze {
/// "32 layers (model.layers.0–31)", "12 layers (encoder.block.0–5, decoder.block.0–5)",
/// "no layers".
std::string describe_layers(const Inventory& inv);
}  // namespace layerfreeze
