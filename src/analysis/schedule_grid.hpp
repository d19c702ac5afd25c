// ScheduleGrid: a plan as a picture's data — rows in data-flow order (towers, connectors,
// embeddings, the trunk's layers with runs of equal rows grouped, head, other), one column per
// change point up to the horizon, and in each cell the group's state and the rule that decided
// it. The SVG and HTML printers draw it; `diff` draws two of them on one set of rows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/plan_summary.hpp"

namespace layerfreeze {

struct GridRow {
  enum class Kind { kTower, kConnector, kEmbeddings, kLayers, kHead, kOther, kMtp };
  Kind kind = Kind::kLayers;
  std::string label;              // "Vision tower", "Layers 0–15", "Layer 31", "Head"
  int32_t first = -1, last = -1;  // kLayers: the trunk layers it groups; kTower: its index
  int64_t numel = 0;
  size_t tensors = 0;
};

struct GridCell {
  GroupState state = GroupState::kEmpty;
  std::string detail;                 // "experts 8/64 train"
  const PlanRule* decider = nullptr;  // the rule deciding most of the row's parameters here
};

struct GridColumn {
  size_t stage = 0;       // index into the times (PlanSummary::stages) it was built from
  std::string label;      // "epoch 2", "step 40"
  bool periodic = false;  // fired by a periodic stage (LISA-style)
  int64_t cycle = -1;     // a block cycle's stage fired here: its cycle number
};

struct ScheduleGrid {
  std::vector<GridRow> rows;
  std::vector<GridColumn> columns;
  std::vector<std::vector<GridCell>> cells;  // [row][column]
  size_t omitted_columns = 0;                // change points past the cap, not drawn
  int64_t period = 0;                        // a periodic stage's period (its unit: period_unit)
  // Per column, of every parameter: the state and the deciding rule (the HTML report's data).
  std::vector<Selection> states;
  std::vector<std::vector<const PlanRule*>> deciders;
  std::string period_unit;  // "epochs" or "steps"
};

/// The grid of a summary: its change points as columns, at most `max_columns` (a periodic
/// schedule shows its first periods; a block cycle one whole cycle and a period, up to 65
/// columns), layer rows grouped.
ScheduleGrid schedule_grid(const PlanSummary& s, size_t max_columns = 24);
/// The grid of `plan` at the given times (a diff puts two plans on the union of their change
/// points); `group`: merge runs of equal layer rows.
ScheduleGrid schedule_grid(const CompiledPlan& plan, const std::vector<Time>& times,
                           const std::vector<std::string>& labels, bool group);
/// Merges runs of consecutive layer rows whose cells are equal in every grid (grids of one
/// model, built ungrouped): the rows of a side-by-side diff.
void group_layer_rows(const std::vector<ScheduleGrid*>& grids);

/// The grid row each parameter is drawn in (its first, for a tied tensor in two); SIZE_MAX for
/// none.
std::vector<size_t> row_of_params(const Inventory& inv, const ScheduleGrid& g);

const char* grid_state_word(GroupState s);  // "frozen", "trainable", "partial", "empty"

}  // namespace layerfreeze
