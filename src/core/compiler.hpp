// The compiler: binds a strategy's parameters, discovers the model's layers (with the
// strategy's discovery overrides), resolves every selector to a set of parameters (all regexes
// in one RE2::Set pass over the names), lays the stages out in time and builds the Plan.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/plan.hpp"
#include "core/rules.hpp"

namespace layerfreeze {

struct CompileOptions {
  std::vector<std::string> sets;            // --set KEY=VALUE, in order
  std::optional<int64_t> steps_per_epoch;   // overrides options.steps_per_epoch
  bool strict = false;                      // selectors that match nothing are errors
};

/// Compiles `s` against `inv`. Errors and warnings go to `diags` (warnings are also kept in
/// the plan). Returns nullopt when there are errors.
std::optional<Plan> compile(const Strategy& s, Inventory inv, const CompileOptions& opts,
                            Diagnostics& diags);

}  // namespace layerfreeze
