// The compiler: binds a strategy's parameters, discovers the model's layers (with the
// strategy's discovery overrides), resolves every selector to a set of parameters (all regexes
// in one RE2::Set pass over the names), lays the stages out in time and builds the CompiledPlan.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/plan.hpp"
#include "core/rules.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze {

/// Compiles `s` against `inv`. Errors and warnings go to `diags` (warnings are also kept in
/// the plan). Returns nullopt when there are errors.
std::optional<CompiledPlan> compile(const StrategyDef& s, Inventory inv, const PlanOptions& opts,
                                    Diagnostics& diags);

}  // namespace layerfreeze
