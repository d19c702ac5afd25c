// `diff --format svg|html`: two strategies on one model side by side, on the same rows and on
// the union of their change points, with the cells whose state differs outlined — the picture a
// pull request that changes a strategy wants. The HTML page adds the text diff and a parameter
// browser whose provenance shows both plans' deciding rules.
#pragma once

#include <string>

#include "analysis/schedule_grid.hpp"

namespace layerfreeze {

struct DiffGrids {
  ScheduleGrid a, b;   // same rows, same columns
  size_t omitted = 0;  // change points past the column cap
};
DiffGrids diff_grids(const CompiledPlan& a, const CompiledPlan& b, const Time& horizon);

/// `differing` (optional): how many cells differ. `also`: what differs beyond the states
/// (learning rates, policies, parameters, the model), a line each, listed under the grids.
std::string diff_svg(const DiffGrids& d, const CompiledPlan& a, const CompiledPlan& b,
                     const std::string& name_a, const std::string& name_b, size_t* differing,
                     const std::vector<std::string>& also = {});
/// `text`: the text diff, shown under the picture.
std::string diff_html(const DiffGrids& d, const CompiledPlan& a, const CompiledPlan& b,
                      const std::string& name_a, const std::string& name_b,
                      const std::string& text);

}  // namespace layerfreeze
