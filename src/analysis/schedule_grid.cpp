#include "analysis/schedule_grid.hpp"

#include <algorithm>
#include <map>

namespace layerfreeze {

namespace {

// The rows every state of a plan shares: group_lines' groups with the trunk's layers (one row a
// layer, grouped later) before the head.
std::vector<GridRow> base_rows(const Inventory& inv) {
  std::vector<GridRow> rows;
  auto groups = group_lines(inv, Bitset(inv.params.size()));
  size_t tower = 0;
  for (const auto& g : groups) {
    GridRow r;
    r.label = g.label;
    r.numel = g.numel;
    r.tensors = g.tensors;
    if (g.label == "Head") {
      for (int32_t l = 0; l < inv.num_layers(); ++l) {
        GridRow lr;
        lr.kind = GridRow::Kind::kLayers;
        lr.first = lr.last = l;
        lr.label = "Layer " + std::to_string(l);
        for (uint32_t q : inv.layers[static_cast<size_t>(l)].params) {
          lr.numel += inv.params[q].numel;
          ++lr.tensors;
        }
        rows.push_back(lr);
      }
      r.kind = GridRow::Kind::kHead;
    } else if (g.label == "Embeddings") {
      r.kind = GridRow::Kind::kEmbeddings;
    } else if (g.label == "Other") {
      r.kind = GridRow::Kind::kOther;
    } else if (g.label.rfind("Connector", 0) == 0) {
      r.kind = GridRow::Kind::kConnector;
    } else {
      r.kind = GridRow::Kind::kTower;
      r.first = r.last = static_cast<int32_t>(tower++);
    }
    rows.push_back(r);
  }
  return rows;
}

// The rows parameter i is counted in (a tied tensor can be embeddings and head).
void rows_of(const Inventory& inv, const std::vector<GridRow>& rows, size_t i,
             std::vector<size_t>& out) {
  out.clear();
  const Param& p = inv.params[i];
  bool head = p.role == Role::kHead;
  for (Role r : p.alias_roles) head = head || r == Role::kHead;
  for (size_t k = 0; k < rows.size(); ++k) {
    const GridRow& r = rows[k];
    switch (r.kind) {
      case GridRow::Kind::kTower:
        if (p.role == Role::kTower && p.part == r.first) out.push_back(k);
        break;
      case GridRow::Kind::kConnector:
        if (p.role == Role::kConnector) out.push_back(k);
        break;
      case GridRow::Kind::kEmbeddings:
        if (p.role == Role::kEmbeddings) out.push_back(k);
        break;
      case GridRow::Kind::kLayers:
        if (p.role == Role::kLayer && p.layer == r.first) out.push_back(k);
        break;
      case GridRow::Kind::kHead:
        if (head) out.push_back(k);
        break;
      case GridRow::Kind::kOther:
        if (p.role == Role::kOther) out.push_back(k);
        break;
    }
  }
}

bool same_cells(const std::vector<GridCell>& a, const std::vector<GridCell>& b) {
  if (a.size() != b.size()) return false;
  for (size_t c = 0; c < a.size(); ++c)
    if (a[c].state != b[c].state || a[c].detail != b[c].detail || a[c].decider != b[c].decider)
      return false;
  return true;
}

std::string layers_label(int32_t first, int32_t last) {
  return first == last ? "Layer " + std::to_string(first)
                       : "Layers " + std::to_string(first) + "\u2013" + std::to_string(last);
}

}  // namespace

const char* grid_state_word(GroupState s) {
  switch (s) {
    case GroupState::kFrozen: return "frozen";
    case GroupState::kActive: return "trainable";
    case GroupState::kPartial: return "partial";
    case GroupState::kEmpty: return "empty";
  }
  return "empty";
}

ScheduleGrid schedule_grid(const CompiledPlan& plan, const std::vector<Time>& times,
                           const std::vector<std::string>& labels, bool group) {
  const Inventory& inv = *plan.inventory;
  ScheduleGrid g;
  g.rows = base_rows(inv);
  g.cells.assign(g.rows.size(), std::vector<GridCell>(times.size()));
  for (size_t c = 0; c < times.size(); ++c) {
    GridColumn col;
    col.stage = c;
    col.label = c < labels.size() ? labels[c] : "";
    g.columns.push_back(col);
  }
  std::vector<size_t> rows;
  for (size_t c = 0; c < times.size(); ++c) {
    Selection sel = plan.state_at(times[c]);
    auto by = plan.deciders_at(times[c]);
    auto layers = layer_runs(inv, sel, plan.slices, true);
    auto groups = group_lines(inv, sel.params);
    // The deciding rule of each row: the one behind most of its parameters.
    std::vector<std::map<const PlanRule*, int64_t>> votes(g.rows.size());
    for (size_t i = 0; i < inv.params.size(); ++i) {
      rows_of(inv, g.rows, i, rows);
      for (size_t r : rows) votes[r][by[i]] += std::max<int64_t>(1, inv.params[i].numel);
    }
    size_t gi = 0;
    for (size_t r = 0; r < g.rows.size(); ++r) {
      GridCell& cell = g.cells[r][c];
      if (g.rows[r].kind == GridRow::Kind::kLayers) {
        const auto& run = layers[static_cast<size_t>(g.rows[r].first)];
        cell.state = run.state;
        cell.detail = run.detail;
      } else {
        cell.state = groups[gi++].state;
      }
      int64_t best = -1;
      for (const auto& [rule, n] : votes[r])
        if (rule && n > best) {
          best = n;
          cell.decider = rule;
        }
    }
  }
  if (group) group_layer_rows({&g});
  return g;
}

ScheduleGrid schedule_grid(const PlanSummary& s, size_t max_columns) {
  std::vector<Time> times;
  std::vector<std::string> labels;
  const bool steps = s.plan->uses_steps;
  for (size_t k = 0; k < s.stages.size() && k < max_columns; ++k) {
    times.push_back(s.stages[k].point.at);
    labels.push_back(time_text(s.stages[k].point.at, steps));
  }
  ScheduleGrid g = schedule_grid(*s.plan, times, labels, true);
  g.omitted_columns = s.stages.size() > max_columns ? s.stages.size() - max_columns : 0;
  for (const auto& st : s.plan->stages)
    if (st.period > 0) {
      g.period = st.period;
      g.period_unit = st.unit == Trigger::Unit::kEpoch ? "epochs" : "steps";
      break;
    }
  for (size_t c = 0; c < g.columns.size(); ++c)
    for (const auto& cause : s.stages[c].point.causes)
      if (cause.rfind("every ", 0) == 0) g.columns[c].periodic = true;
  return g;
}

void group_layer_rows(const std::vector<ScheduleGrid*>& grids) {
  if (grids.empty()) return;
  const size_t n = grids[0]->rows.size();
  std::vector<bool> joins(n, false);  // row r joins row r-1
  for (size_t r = 1; r < n; ++r) {
    bool join = true;
    for (const ScheduleGrid* g : grids) {
      const GridRow& a = g->rows[r - 1];
      const GridRow& b = g->rows[r];
      join = join && a.kind == GridRow::Kind::kLayers && b.kind == GridRow::Kind::kLayers &&
             same_cells(g->cells[r - 1], g->cells[r]);
    }
    joins[r] = join;
  }
  for (ScheduleGrid* g : grids) {
    std::vector<GridRow> rows;
    std::vector<std::vector<GridCell>> cells;
    for (size_t r = 0; r < n; ++r) {
      if (joins[r]) {
        rows.back().last = g->rows[r].last;
        rows.back().numel += g->rows[r].numel;
        rows.back().tensors += g->rows[r].tensors;
        continue;
      }
      rows.push_back(g->rows[r]);
      cells.push_back(g->cells[r]);
    }
    for (auto& row : rows)
      if (row.kind == GridRow::Kind::kLayers) row.label = layers_label(row.first, row.last);
    g->rows = std::move(rows);
    g->cells = std::move(cells);
  }
}

}  // namespace layerfreeze
