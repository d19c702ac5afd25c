#include "analysis/schedule_grid.hpp"

#include <algorithm>
#include <cstdint>
#include <map>

#include "core/block_cycle.hpp"

namespace layerfreeze {

namespace {

// The rows every state of a plan shares: group_lines' groups with the trunk's layers (one row a
// layer, grouped later) before the head.
std::vector<GridRow> base_rows(const Inventory& inv) {
  std::vector<GridRow> rows;
  auto groups = group_lines(inv, Bitset(inv.params().size()));
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
          lr.numel += inv.params()[q].numel;
          ++lr.tensors;
        }
        rows.push_back(lr);
      }
      r.kind = GridRow::Kind::kHead;
    } else if (g.label == "Embeddings") {
      r.kind = GridRow::Kind::kEmbeddings;
    } else if (g.label == "Other") {
      r.kind = GridRow::Kind::kOther;
    } else if (g.label == "MTP") {
      r.kind = GridRow::Kind::kMtp;
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

// Which row each kind of parameter is drawn in, found in O(1) a parameter.
struct RowIndex {
  std::vector<size_t> tower, layer;  // by tower index, by trunk layer
  size_t connector = SIZE_MAX, embeddings = SIZE_MAX, head = SIZE_MAX, other = SIZE_MAX,
         mtp = SIZE_MAX;

  RowIndex(const Inventory& inv, const std::vector<GridRow>& rows)
      : tower(inv.towers.size(), SIZE_MAX), layer(static_cast<size_t>(inv.num_layers()), SIZE_MAX) {
    for (size_t k = 0; k < rows.size(); ++k) {
      const GridRow& r = rows[k];
      switch (r.kind) {
        case GridRow::Kind::kTower:
          if (r.first >= 0 && static_cast<size_t>(r.first) < tower.size()) tower[r.first] = k;
          break;
        case GridRow::Kind::kConnector: connector = k; break;
        case GridRow::Kind::kEmbeddings: embeddings = k; break;
        case GridRow::Kind::kLayers:
          for (int32_t l = r.first; l <= r.last; ++l)
            if (l >= 0 && static_cast<size_t>(l) < layer.size()) layer[l] = k;
          break;
        case GridRow::Kind::kHead: head = k; break;
        case GridRow::Kind::kOther: other = k; break;
        case GridRow::Kind::kMtp: mtp = k; break;
      }
    }
  }

  // The rows parameter p is counted in (a tied tensor can be embeddings and head), in order.
  void of(const Param& p, std::vector<size_t>& out) const {
    out.clear();
    auto add = [&](size_t k) {
      if (k != SIZE_MAX) out.push_back(k);
    };
    switch (p.role) {
      case Role::kTower:
        if (p.part >= 0 && static_cast<size_t>(p.part) < tower.size()) add(tower[p.part]);
        break;
      case Role::kConnector: add(connector); break;
      case Role::kEmbeddings: add(embeddings); break;
      case Role::kLayer:
        if (p.layer >= 0 && static_cast<size_t>(p.layer) < layer.size()) add(layer[p.layer]);
        break;
      case Role::kOther: add(other); break;
      case Role::kMtp: add(mtp); break;
      case Role::kHead: break;
    }
    bool is_head = p.role == Role::kHead;
    for (Role r : p.alias_roles) is_head = is_head || r == Role::kHead;
    if (is_head) add(head);
  }
};

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

std::vector<size_t> row_of_params(const Inventory& inv, const ScheduleGrid& g) {
  std::vector<size_t> out(inv.params().size(), SIZE_MAX), rows;
  RowIndex index(inv, g.rows);
  for (size_t i = 0; i < inv.params().size(); ++i) {
    index.of(inv.params()[i], rows);
    if (!rows.empty()) out[i] = rows.front();
  }
  return out;
}

const char* grid_state_word(GroupState s) {
  switch (s) {
    case GroupState::kFrozen: return "frozen";
    case GroupState::kActive: return "trainable";
    case GroupState::kPartial: return "partial";
    case GroupState::kEmpty: return "empty";
  }
  return "empty";
}

namespace {

// The grid at `times`; `stages` (optional, one per time) supplies the states and the layer and
// group lines a summary already computed.
ScheduleGrid build(const CompiledPlan& plan, const std::vector<Time>& times,
                   const std::vector<std::string>& labels, bool group,
                   const std::vector<const StageSummary*>& stages) {
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
  // Each parameter's rows, once: a tied tensor can be in two.
  RowIndex index(inv, g.rows);
  std::vector<size_t> rows, row1(inv.params().size(), SIZE_MAX),
      row2(inv.params().size(), SIZE_MAX);
  for (size_t i = 0; i < inv.params().size(); ++i) {
    index.of(inv.params()[i], rows);
    if (!rows.empty()) row1[i] = rows[0];
    if (rows.size() > 1) row2[i] = rows[1];
  }
  for (size_t c = 0; c < times.size(); ++c) {
    const StageSummary* st = c < stages.size() ? stages[c] : nullptr;
    g.states.push_back(st ? Selection{st->point.frozen, st->point.frozen_slices}
                          : plan.state_at(times[c]));
    g.deciders.push_back(plan.deciders_at(times[c]));
    const Selection& sel = g.states.back();
    const auto& by = g.deciders.back();
    std::vector<LayerRun> layers;
    if (st) {
      for (const auto& run : st->runs)
        for (int32_t l = run.first; l <= run.last; ++l) layers.push_back(run);
    } else {
      layers = layer_runs(inv, sel, plan.slices, true);
    }
    auto groups = st ? st->groups : group_lines(inv, sel, plan.slices);
    // The deciding rule of each row: the one behind most of its parameters (a row has few).
    std::vector<std::vector<std::pair<const PlanRule*, int64_t>>> votes(g.rows.size());
    auto vote = [&](size_t r, size_t i) {
      auto& v = votes[r];
      auto it = std::find_if(v.begin(), v.end(), [&](const auto& x) { return x.first == by[i]; });
      if (it == v.end()) it = v.insert(v.end(), {by[i], 0});
      it->second += std::max<int64_t>(1, inv.params()[i].numel);
    };
    for (size_t i = 0; i < inv.params().size(); ++i) {
      if (row1[i] != SIZE_MAX) vote(row1[i], i);
      if (row2[i] != SIZE_MAX) vote(row2[i], i);
    }
    size_t gi = 0;
    for (size_t r = 0; r < g.rows.size(); ++r) {
      GridCell& cell = g.cells[r][c];
      if (g.rows[r].kind == GridRow::Kind::kLayers) {
        const auto& run = layers[static_cast<size_t>(g.rows[r].first)];
        cell.state = run.state;
        cell.detail = run.detail;
      } else {
        cell.state = groups[gi].state;
        cell.detail = groups[gi++].detail;  // "rows 31990-31999 of 32000 train"
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

}  // namespace

ScheduleGrid schedule_grid(const CompiledPlan& plan, const std::vector<Time>& times,
                           const std::vector<std::string>& labels, bool group) {
  return build(plan, times, labels, group, {});
}

ScheduleGrid schedule_grid(const PlanSummary& s, size_t max_columns) {
  std::vector<Time> times;
  std::vector<std::string> labels;
  const bool steps = s.plan->uses_steps;
  for (const auto& c : s.cycles)
    max_columns = std::max(max_columns,
                           static_cast<size_t>(std::min<int64_t>(cycle_length(*c.cycle), 64)) + 1);
  for (size_t k = 0; k < s.stages.size() && k < max_columns; ++k) {
    times.push_back(s.stages[k].point.at);
    labels.push_back(time_text(s.stages[k].point.at, steps));
  }
  std::vector<const StageSummary*> stages;
  for (size_t k = 0; k < times.size(); ++k) stages.push_back(&s.stages[k]);
  ScheduleGrid g = build(*s.plan, times, labels, true, stages);
  g.omitted_columns = s.stages.size() > max_columns ? s.stages.size() - max_columns : 0;
  for (const auto& st : s.plan->stages)
    if (st.period > 0) {
      g.period = st.period;
      g.period_unit = st.unit == Trigger::Unit::kEpoch ? "epochs" : "steps";
      break;
    }
  for (size_t c = 0; c < g.columns.size(); ++c) {
    for (const auto& cause : s.stages[c].point.causes)
      if (cause.rfind("every ", 0) == 0) g.columns[c].periodic = true;
    g.columns[c].cycle = s.stages[c].point.cycle;
  }
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
