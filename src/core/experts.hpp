// Expert discovery: inside the layers layer discovery found, the parts of a mixture-of-experts
// block — routed experts (one module per expert), fused expert tensors (every expert along the
// first dimension), shared experts and routers (docs/EXPERTS.md). The patterns are data
// (rules/discovery.yaml: experts, fused_experts, shared_experts, routers).
#pragma once

#include <string>
#include <vector>

#include "core/discovery_patterns.hpp"
#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

/// Sets Param::expert_part / expert and Inventory::num_experts. Runs after the layers are known
/// (discover_layers calls it); only trunk layers hold experts.
void discover_experts(Inventory& inv, const DiscoveryPatterns& patterns, Diagnostics& diags);

/// What a layer's experts are, for printers: "8 experts · router", "64 experts fused in 3
/// tensors · shared expert · router"; "" for a layer without experts.
std::string describe_layer_experts(const Inventory& inv, size_t layer);

/// Sorted indices as ranges: "0-3, 7, 9-10".
std::string index_ranges(const std::vector<int32_t>& sorted);

}  // namespace layerfreeze
