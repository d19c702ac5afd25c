// CompiledPlan printers: the text a reviewer reads, the JSON contract (docs/CLI.md), and Markdown
// for a pull request. All three print the same PlanSummary.
#pragma once

#include <string>

#include "analysis/plan_summary.hpp"

namespace layerfreeze {

std::string plan_text(const PlanSummary& s);
std::string plan_json(const PlanSummary& s);  // "layerfreeze.plan/1", pretty-printed
std::string plan_markdown(const PlanSummary& s);

/// "key=value, key=value" of the parameters in force.
std::string params_text(const CompiledPlan& plan);
/// The executor policies of a plan, one line.
std::string options_text(const CompiledPlan& plan);

}  // namespace layerfreeze
