// The patterns layer discovery uses (docs/ARCHITECTURES.md, docs/RULES.md "Discovery overrides"):
// data in rules/discovery.yaml, extended or replaced by a rules file's `discovery:` key. One
// reader of a discovery block serves both, so the shipped file is checked as strictly as a
// user's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace YAML {
class Node;
}
namespace re2 {
class RE2;
}
using re2::RE2;

namespace layerfreeze {

class YamlReader;

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
  std::vector<Pattern> mtp;         // a multi-token-prediction block's root ("model.mtp_layers")
  // Mixture-of-experts blocks inside the layers (docs/EXPERTS.md).
  std::vector<Pattern> experts;         // on container keys, '#' the expert ("mlp.experts.#")
  std::vector<Pattern> fused_experts;   // on names: every expert in one tensor, first dimension
  std::vector<Pattern> shared_experts;  // on names
  std::vector<Pattern> routers;         // on names
  bool explicit_towers = false;         // towers/trunk came from a rules file: no connector needed

  /// The shipped patterns (rules/discovery.yaml).
  static const DiscoveryPatterns& shipped();
  /// What reading the shipped file reported (nothing, unless rules/discovery.yaml is broken;
  /// a test keeps it so).
  static const Diagnostics& shipped_diagnostics();
  /// `overrides` first, then these; or only `overrides` where `replace` is set.
  DiscoveryPatterns merged(const DiscoveryPatterns& overrides, bool replace) const;
};

/// Reads a discovery block (`layers`, `embeddings`, `head`, `stack_order`, `towers`,
/// `connectors`, `trunk`, `mtp`, `experts`, `fused_experts`, `shared_experts`, `routers`,
/// `replace`) into `out`: unknown keys, wrong types, invalid regexes and a layers or experts
/// pattern without '#' are errors at the node. `replace` may be null (the shipped file).
void read_discovery_block(YamlReader& r, const YAML::Node& block, DiscoveryPatterns& out,
                          bool* replace);

/// `p` compiled (core/regex.hpp options); a bad pattern is a `bad-regex` error at the pattern's
/// location and gives nullptr.
std::unique_ptr<RE2> compile_pattern(const Pattern& p, const char* what, Diagnostics& diags);

/// A family's structure as data an Inventory carries (and a manifest keeps), and back. Patterns
/// from hints are located at `file` (no line): a bad one is an error when discovery compiles it.
std::vector<StructureHint> structure_hints(const DiscoveryPatterns& p);
/// True for a kind a hint may have: a key of rules/discovery.yaml (`trunk`, `stack_order`, …).
bool is_discovery_kind(const std::string& kind);
DiscoveryPatterns patterns_from_hints(const std::vector<StructureHint>& hints,
                                      const std::string& file);

/// A discovery block from YAML text (the shipped file, tests).
DiscoveryPatterns parse_discovery_yaml(const std::string& text, const std::string& file,
                                       Diagnostics& diags);

}  // namespace layerfreeze
