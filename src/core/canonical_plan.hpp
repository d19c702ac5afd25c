// The canonical plan: one serialization of everything a trainer would run differently under a
// compiled plan — the model's inventory and discovered structure, the bound strategy parameters,
// every executor policy, and the frozen state (tensors and expert slices) at each change point
// with the learning rate of each param group it opens. JSON, keys sorted, numbers exact; the
// plan's fingerprint is the hash of this text (docs/CLI.md, "The canonical plan").
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace layerfreeze {

class CompiledPlan;
class Bitset;

/// The version tag every canonical plan carries; changes when its content does.
inline constexpr const char* kCanonicalPlanFormat = "layerfreeze.canonical/1";

/// The canonical value of `plan` (finalize() must have run).
nlohmann::json canonical_plan(const CompiledPlan& plan);

/// Its text: compact, keys sorted; what the fingerprint hashes.
std::string canonical_text(const nlohmann::json& canonical);

/// The 16-hex-digit hash of a canonical text.
std::string fingerprint_of(const std::string& canonical_text);

/// Indices of `b` as inclusive ranges: "0-143,145,200-210" ("" when empty).
std::string ranges_text(const Bitset& b);
/// A set in the canonical plan: ranges_text, or — when the set is scattered into more runs
/// than that is worth (a regex over 100,000 expert tensors) — "hex:" and its 64-bit words in
/// order, each as 16 hex digits, bit i of word k being index 64k + i, trailing zero words left
/// out. The form depends on the set only.
std::string set_text(const Bitset& b);

}  // namespace layerfreeze
