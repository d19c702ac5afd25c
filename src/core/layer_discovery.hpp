// Layer discovery: finds the repeated blocks of a model from its parameter names and gives
// every parameter a role (docs/ARCHITECTURES.md). The patterns are data (rules/discovery.yaml),
// extended or replaced by a rules file's `discovery:` key.
#pragma once

#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

struct Pattern {
  std::string text;
  SourceLoc loc;
  std::string modality;  // tower patterns: "vision", "audio"; "" elsewhere
};

/// The patterns discovery uses, in precedence order.
struct DiscoveryPatterns {
  std::vector<Pattern> layers;      // on container keys ("transformer.h.#")
  std::vector<Pattern> embeddings;  // on parameter names
  std::vector<Pattern> head;        // on parameter names
  std::vector<std::string> stack_order;
  // Multimodal models (docs/ARCHITECTURES.md, "Multimodal models"): patterns on module paths.
  std::vector<Pattern> towers;      // a tower's root ("visual", "vision_tower")
  std::vector<Pattern> connectors;  // a connector's root ("multi_modal_projector")
  std::vector<Pattern> trunk;       // the trunk's stacks: when set, every other stack is a tower
  bool explicit_towers = false;     // towers/trunk came from a rules file: no connector needed

  /// The shipped patterns (rules/discovery.yaml).
  static const DiscoveryPatterns& shipped();
  /// `overrides` first, then these; or only `overrides` where `replace` is set.
  DiscoveryPatterns merged(const DiscoveryPatterns& overrides, bool replace) const;
};

/// Fills stacks, layers, roles and anchors of `inv`. Bad patterns are errors in `diags`; a
/// model without repeated blocks gets a note, not an error (layer selectors report it later).
void discover_layers(Inventory& inv, const DiscoveryPatterns& patterns, Diagnostics& diags);

/// Parses a discovery block (`layers:`, `embeddings:`, `head:`, `stack_order:`, `towers:`,
/// `connectors:`, `trunk:`) from YAML text.
/// Used for the shipped file and by the rules parser.
DiscoveryPatterns parse_discovery_yaml(const std::string& text, const std::string& file,
                                       Diagnostics& diags);

}  // namespace layerfreeze

namespace layerfreeze {
/// "32 layers (model.layers.0–31)", "12 layers (encoder.block.0–5, decoder.block.0–5)",
/// "no layers".
std::string describe_layers(const Inventory& inv);
}  // namespace layerfreeze
