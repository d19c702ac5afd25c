// PlanAccess: what layerfreeze's own components — the executor, the seed API, the distributed
// agreement, the git reader of rules files — reach inside the public Strategy and Plan. Internal:
// not installed, and the CLI does not use it (it is a client of include/layerfreeze/plan.hpp).
#pragma once

#include <memory>

#include "core/plan.hpp"
#include "core/rules.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze {

struct PlanAccess {
  static const CompiledPlan& compiled(const Plan& p) { return *p.impl_; }
  static Plan plan(std::shared_ptr<const CompiledPlan> p) { return Plan(std::move(p)); }
  static const StrategyDef& def(const Strategy& s);
  static Strategy strategy(StrategyDef def, SourceTexts sources);
};

}  // namespace layerfreeze
