#include "core/canonical_plan.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/block_cycle.hpp"
#include "core/hash.hpp"
#include "core/json_text.hpp"
#include "core/plan.hpp"

namespace layerfreeze {

namespace {

using nlohmann::json;

// A number as JSON, exactly: nlohmann writes the shortest text that reads back the same double;
// a value JSON cannot hold is named.
json number(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

// What discovery decided for every tensor — role, layer, module type, expert part — hashed: the
// learning-rate depth (lr_decay), BatchNorm policy and presets read it, and a rules file's
// `discovery:` can change it without changing any name or shape.
std::string structure_digest(const Inventory& inv) {
  Hasher h;
  h.add(static_cast<int64_t>(inv.trunk_layers));
  for (const auto& p : inv.params()) {
    h.add(static_cast<int>(p.role));
    h.add(static_cast<int64_t>(p.layer));
    h.add(static_cast<int64_t>(p.part));
    h.add(static_cast<int64_t>(p.anchor_layer));
    h.add(p.module_type);
    h.add(static_cast<int>(p.expert_part));
    h.add(static_cast<int64_t>(p.expert));
    for (Role r : p.alias_roles) h.add(static_cast<int>(r));
  }
  return h.hex();
}

json state_json(const Selection& s) {
  json j = {{"frozen", set_text(s.params)}};
  if (s.slices.size() > 0) j["frozen_slices"] = set_text(s.slices);
  return j;
}

json time_json(const CompiledPlan& plan, Trigger::Unit unit, int64_t at) {
  const auto spe = plan.options.steps_per_epoch;
  if (unit == Trigger::Unit::kEpoch)
    return {{"epoch", at}, {"step", spe ? json(at * *spe) : json(nullptr)}};
  return {{"epoch", spe ? json(at / *spe) : json(nullptr)}, {"step", at}};
}

// Sorted indices as ranges, the form ranges_text gives a set: "0-2,5".
std::string indices_text(const std::vector<uint32_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(v[i]);
    if (j > i) out += "-" + std::to_string(v[j]);
    i = j + 1;
  }
  return out;
}

// A resolved selector that varies by period (random layers), as data: the leaves' parameter and
// slice ranges, the pool, count and seed of each draw.
json set_json(const DynamicSet& d) {
  static const char* const kOps[] = {"leaf", "union", "intersect", "minus", "random", "cycle"};
  json j = {{"op", kOps[static_cast<int>(d.op)]}};
  switch (d.op) {
    case DynamicSet::Op::kLeaf:
      j["params"] = set_text(d.leaf);
      if (d.slices.size() > 0) j["slices"] = set_text(d.slices);
      break;
    case DynamicSet::Op::kRandom:
      j["pool"] = d.pool;
      j["count"] = d.count;
      j["seed"] = std::to_string(d.seed);  // a uint64 as text: every JSON reader keeps it exact
      j["mask"] = set_text(d.mask);
      break;
    case DynamicSet::Op::kCycle: {
      json blocks = json::array(), slices = json::array();
      bool cut = false;  // a block that cuts rows or experts: the cut slices, per block
      for (const auto& b : d.blocks) {
        blocks.push_back(indices_text(b.params));
        slices.push_back(b.cut ? json(set_text(*b.cut)) : json(nullptr));
        cut = cut || b.cut.has_value();
      }
      j["blocks"] = std::move(blocks);
      if (cut) j["block_slices"] = std::move(slices);
      j["order"] = cycle_order_name(d.order);
      j["start"] = d.start;
      j["seed"] = std::to_string(d.seed);
      break;
    }
    default: {
      json kids = json::array();
      for (const auto& k : d.kids) kids.push_back(set_json(k));
      j["of"] = std::move(kids);
    }
  }
  return j;
}

// The param groups a change point opens: each newly unfrozen tensor joins the group of the
// stage whose rule unfroze it — an absolute `lr`, or a scale of the optimizer's (the stage's
// `lr_scale`, else the plan's unfreeze_lr_scale); lr_decay then scales per tensor (a policy).
json unfrozen_groups(const CompiledPlan& plan, const Time& at, const Bitset& opened) {
  const auto deciders = plan.deciders_at(at);
  std::map<std::pair<bool, double>, Bitset> groups;  // (absolute?, value) -> tensors
  opened.for_each([&](size_t i) {
    const PlanStage* stage = plan.stage_of(deciders[i]);
    std::pair<bool, double> key{false, plan.options.unfreeze_lr_scale};
    if (stage && stage->group_lr)
      key = {true, *stage->group_lr};
    else if (stage && stage->group_lr_scale)
      key = {false, *stage->group_lr_scale};
    auto [it, added] = groups.try_emplace(key, plan.inventory->params().size());
    it->second.set(i);
  });
  json out = json::array();
  for (const auto& [key, tensors] : groups)
    out.push_back(
        {{key.first ? "lr" : "lr_scale", number(key.second)}, {"tensors", set_text(tensors)}});
  return out;
}

bool has_periodic(const CompiledPlan& plan) {
  for (const auto& st : plan.stages)
    if (st.period > 0) return true;
  return false;
}

}  // namespace

std::string ranges_text(const Bitset& b) {
  // Word by word: runs of empty and full words cost one comparison each (a state over a
  // 100,000-tensor model is a few runs).
  const auto& w = b.words();
  auto next = [&](size_t from, bool value) {  // first index >= from whose bit is `value`
    size_t k = from >> 6;
    if (k >= w.size()) return b.size();
    uint64_t word = (value ? w[k] : ~w[k]) & (~uint64_t{0} << (from & 63));
    while (!word) {
      if (++k == w.size()) return b.size();
      word = value ? w[k] : ~w[k];
    }
    return std::min(b.size(), k * 64 + static_cast<size_t>(__builtin_ctzll(word)));
  };
  std::string out;
  for (size_t i = next(0, true); i < b.size(); i = next(i, true)) {
    size_t end = next(i, false);  // one past the run
    if (!out.empty()) out += ',';
    out += std::to_string(i);
    if (end - 1 > i) out += '-' + std::to_string(end - 1);
    i = end;
  }
  return out;
}

std::string set_text(const Bitset& b) {
  // Runs of set bits (a run starts where a bit is set and the one below it is not).
  const auto& w = b.words();
  size_t runs = 0;
  uint64_t below = 0;  // the previous word's top bit
  for (uint64_t x : w) {
    runs += static_cast<size_t>(__builtin_popcountll(x & ~((x << 1) | below)));
    below = x >> 63;
  }
  // A run costs about 12 characters as a range, a word 16 as hex: the shorter form, decided by
  // the set alone, so the text stays canonical.
  if (runs * 12 <= w.size() * 16) return ranges_text(b);
  static const char* const kHex = "0123456789abcdef";
  size_t n = w.size();
  while (n > 0 && w[n - 1] == 0) --n;
  std::string out = "hex:";
  out.reserve(4 + n * 16);
  for (size_t k = 0; k < n; ++k)
    for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(w[k] >> shift) & 15];
  return out;
}

json canonical_plan(const CompiledPlan& plan) {
  const Inventory& inv = *plan.inventory;
  const PlanPolicies& o = plan.options;
  json j;
  j["format"] = kCanonicalPlanFormat;
  j["model"] = {{"inventory", inv.fingerprint()},
                {"structure", structure_digest(inv)},
                {"tensors", inv.params().size()},
                {"expert_slices", plan.slices.size()}};
  if (plan.slices.has_rows()) {
    // The tensors row selectors cut, in slice-table order: a set's bits count their rows.
    json rows = json::array();
    for (size_t k = 0; k < plan.slices.params.size(); ++k)
      if (plan.slices.kinds[k] == SliceTable::Kind::kRows)
        rows.push_back({inv.params()[plan.slices.params[k]].name, plan.slices.slices_of(k)});
    j["model"]["row_tensors"] = std::move(rows);
  }
  json params = json::object();
  for (const auto& [k, v] : plan.params) params[k] = v.to_string();
  j["params"] = std::move(params);
  j["policies"] = {
      {"batchnorm",
       o.batchnorm == Options::BatchNorm::kUnchanged ? "unchanged" : "eval_when_frozen"},
      {"optimizer_state", o.optimizer_state == Options::OptimizerState::kDrop ? "drop" : "keep"},
      {"unfreeze_lr_scale", number(o.unfreeze_lr_scale)},
      {"lr_decay", number(o.lr_decay)},
      {"steps_per_epoch", o.steps_per_epoch ? json(*o.steps_per_epoch) : json(nullptr)}};
  // Only when set: every plan written before the policy existed keeps its fingerprint.
  if (o.frozen_prefix == Options::FrozenPrefix::kEval) j["policies"]["frozen_prefix"] = "eval";

  // The initial state, then every change. Without periodic stages a plan is its change points:
  // stages that fire together are one point, a stage that changes nothing is no point (two
  // strategies written differently that run the same have one fingerprint). Periodic stages
  // are kept as resolved rules, since their state depends on the period.
  const Selection start = plan.state_at(Time{0, 0});
  json changes = json::array();
  if (!has_periodic(plan) && plan.watches.empty()) {
    j["form"] = "changes";
    j["start"] = state_json(start);
    Selection prev = start;
    for (size_t a = 0; a < plan.stages.size();) {
      size_t b = a;
      while (b < plan.stages.size() && plan.stages[b].key == plan.stages[a].key) ++b;
      const PlanStage& st = plan.stages[a];
      json at = time_json(plan, st.unit, st.at);
      const Time t{at["epoch"].is_null() ? -1 : at["epoch"].get<int64_t>(),
                   at["step"].is_null() ? -1 : at["step"].get<int64_t>()};
      Time probe = t;  // state_at needs the unit's value; the other may be unknown (-1)
      if (probe.epoch < 0) probe.epoch = 0;
      if (probe.step < 0) probe.step = 0;
      Selection now = plan.state_at(probe);
      if (st.key != 0 && now != prev) {
        json c = state_json(now);
        c["at"] = std::move(at);
        if (plan.has_stage_lr()) {
          Bitset opened = prev.params;
          opened.subtract(now.params);
          if (opened.any()) c["groups"] = unfrozen_groups(plan, probe, opened);
        }
        changes.push_back(std::move(c));
        prev = std::move(now);
      }
      a = b;
    }
  } else {
    j["form"] = "rules";
    j["start"] = state_json(plan.state_at(Time{0, 0}));
    json initial = json::array();
    for (const auto& r : plan.initial)
      initial.push_back({{"action", action_name(r.action)}, {"set", set_json(r.set)}});
    j["initial"] = std::move(initial);
    // Stages on the timeline, then the metric-triggered ones by id: their definitions, never
    // where one run placed them.
    auto stage_json = [&](const PlanStage& st) {
      json rules = json::array();
      for (const auto& r : st.rules)
        rules.push_back({{"action", action_name(r.action)}, {"set", set_json(r.set)}});
      json c = {{"rules", std::move(rules)}};
      if (st.group_lr) c["lr"] = number(*st.group_lr);
      if (st.group_lr_scale) c["lr_scale"] = number(*st.group_lr_scale);
      return c;
    };
    for (const auto& st : plan.stages) {
      if (st.watch >= 0) continue;
      json c = stage_json(st);
      c["at"] = time_json(plan, st.unit, st.at);
      c["every"] = st.period > 0 ? json(st.period) : json(nullptr);
      changes.push_back(std::move(c));
    }
    json watched = json::array();
    for (size_t id = 0; id < plan.watched.size(); ++id) {
      const MetricWatch& w = plan.watches[id];
      json c = stage_json(plan.watched[id]);
      c["plateau"] = {{"metric", w.metric},
                      {"mode", w.maximize ? "max" : "min"},
                      {"patience", w.patience},
                      {"min_delta", number(w.min_delta)},
                      {"not_before", w.not_before >= 0 ? json(w.not_before) : json(nullptr)},
                      {"not_after", w.not_after >= 0 ? json(w.not_after) : json(nullptr)},
                      {"relative", w.relative},
                      {"anchor", w.anchor},
                      {"sequence", w.sequence}};
      watched.push_back(std::move(c));
    }
    if (!watched.empty()) j["metric_stages"] = std::move(watched);
  }
  j["changes"] = std::move(changes);
  return j;
}

std::string canonical_text(const json& canonical) { return json_text(canonical); }

std::string fingerprint_of(const std::string& text) {
  Hasher h;
  h.add(text);
  return h.hex();
}

}  // namespace layerfreeze
