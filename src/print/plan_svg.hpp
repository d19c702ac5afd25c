// The plan as a picture (`plan --format svg`, `--svg FILE`; docs/CLI.md): rows in data-flow
// order, a column per change point, each cell frozen / trainable / partial in its own colour and
// pattern, a `<title>` tooltip naming the deciding rule, the cost of each stage under the grid,
// where backward stops, a legend. Deterministic bytes, no fonts or links from outside.
#pragma once

#include <string>

#include "analysis/plan_summary.hpp"
#include "analysis/schedule_grid.hpp"

namespace layerfreeze {

std::string plan_svg(const PlanSummary& s);
/// The same, of a grid already built from `s` (the HTML report draws the one it describes).
std::string plan_svg(const PlanSummary& s, const ScheduleGrid& g);

// The pieces, for the diff picture and the HTML report.
struct SvgGrid {
  std::string body;
  int width = 0, height = 0, label_w = 0;
  size_t differing = 0;  // cells outlined as differing from `other`
};
/// `g` drawn at (x0, y0) inside a group `id`; cells whose state differs from `other`'s at the
/// same row and column are outlined.
SvgGrid draw_grid(const ScheduleGrid& g, int x0, int y0, const std::string& id,
                  const ScheduleGrid* other);
std::string svg_defs();
std::string svg_legend(int x, int y, bool with_differs);
std::string svg_open(int width, int height, const std::string& title);
std::string xml_escape(const std::string& s);

}  // namespace layerfreeze
