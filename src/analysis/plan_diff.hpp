// PlanDiff between two canonical plans (core/canonical_plan.hpp): what a trainer would run
// differently — the model, bound parameters, policies, and per change point the frozen tensors,
// expert slices and param-group learning rates. `diff`, `check`, the ranks' disagreement message
// and the C++ `diff(a, b)` all read it.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "layerfreeze/inventory.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze {

/// Compares canonical plans `a` and `b`. `names` (optional) names tensors by index when both
/// plans are of that inventory; else differences are counted. `label_a`/`label_b` name the
/// sides in messages ("A"/"B", "locked"/"now", "rank 0"/"rank 1").
PlanDiff diff_canonical(const nlohmann::json& a, const nlohmann::json& b,
                        const Inventory* names = nullptr, const std::string& label_a = "A",
                        const std::string& label_b = "B");

}  // namespace layerfreeze
