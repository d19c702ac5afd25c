// CompiledPlan printers: the text a reviewer reads, the JSON contract (docs/CLI.md), and Markdown
// for a pull request. All three print the same PlanSummary.
#pragma once

#include <string>

#include "analysis/plan_summary.hpp"

namespace layerfreeze {

/// A change point's cacheable prefix, short: "layers 0–15 (0.50× a step)", "—" (docs/CACHE.md).
std::string cache_short(const StageSummary& st);
std::string plan_text(const PlanSummary& s);
std::string plan_json(const PlanSummary& s);  // "layerfreeze.plan/1", pretty-printed
/// `svg_path`: the picture written beside it (--svg), linked at the top.
std::string plan_markdown(const PlanSummary& s, const std::string& svg_path = "");

/// "key=value, key=value" of the parameters in force.
std::string params_text(const CompiledPlan& plan);
/// "LlamaForCausalLM · 32 layers (model.layers.0–31) · 291 tensors · 6,738,415,616 parameters".
std::string model_summary_line(const Inventory& inv, bool shapes);
/// Where a stage's backward pass stops, in a word or two: "layer 12", "input", "head", "—".
std::string backward_short(const Inventory& inv, const StageSummary& st);
/// The executor policies of a plan, one line.
std::string options_text(const CompiledPlan& plan);

}  // namespace layerfreeze
