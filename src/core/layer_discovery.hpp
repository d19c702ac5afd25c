// Layer discovery: finds the repeated blocks of a model from its parameter names and gives
// every parameter a role (docs/ARCHITECTURES.md). The patterns are data (rules/discovery.yaml),
// extended or replaced by a rules file's `discovery:` key.
#pragma once

#include <string>
#include <vector>

#include "core/discovery_patterns.hpp"
#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

/// Fills stacks, layers, roles and anchors of `inv`. Bad patterns are errors in `diags`; a
/// model without repeated blocks gets a note, not an error (layer selectors report it later).
void discover_layers(Inventory& inv, const DiscoveryPatterns& patterns, Diagnostics& diags);

}  // namespace layerfreeze

namespace layerfreeze {
/// "32 layers (model.layers.0–31)", "12 layers (encoder.block.0–5, decoder.block.0–5)",
/// "no layers".
std::string describe_layers(const Inventory& inv);
}  // namespace layerfreeze
