// `plan --format html`: one self-contained page (inline CSS and script, no network access) with
// the SVG schedule, the stage table, the warnings and a parameter browser — filter by name or
// regex, click a parameter or a cell for its provenance at every change point. The page embeds
// its data as JSON (`layerfreeze.report/1`): the stages, the rules, and the parameters grouped
// into entries whose names differ only in index ranges with the same history
// ("model.layers.{0–5}.mlp.up_proj.weight"), so a 100k-tensor model stays small.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "analysis/plan_summary.hpp"
#include "analysis/schedule_grid.hpp"

namespace layerfreeze {

std::string plan_html(const PlanSummary& s);

/// One plan of a report: its grid (all sides share rows and columns).
struct ReportSide {
  std::string label;
  const CompiledPlan* plan = nullptr;
  const ScheduleGrid* grid = nullptr;
};
/// The report's rule table and parameter entries: per entry, each side's states and deciding
/// rules, column after column, side after side.
void report_entries(const std::vector<ReportSide>& sides, nlohmann::json& rules,
                    nlohmann::json& entries);
/// A grid's row labels (`rows`) or column labels, as a JSON array.
nlohmann::json grid_labels(const ScheduleGrid& g, bool rows);
/// `d` as text safe inside a <script> element.
std::string script_safe(const nlohmann::json& d);
/// The page's embedded data, safe inside a <script> element.
std::string report_data_json(const PlanSummary& s, const ScheduleGrid& g);

}  // namespace layerfreeze
