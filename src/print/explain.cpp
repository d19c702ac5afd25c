#include "print/explain.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "analysis/plan_summary.hpp"
#include "core/experts.hpp"
#include "core/format.hpp"

namespace layerfreeze {

std::string state_word(const CompiledPlan& plan, const Selection& s, uint32_t i) {
  if (s.params.test(i)) return "FROZEN";
  if (!s.partial(i, plan.slices)) return "TRAINABLE";
  const int64_t E = plan.slices.slices_of(static_cast<size_t>(plan.slices.slot[i]));
  const std::vector<int32_t> train = plan.slices.indices_in(i, s.slices, false);
  return std::string("PARTIAL (") + (plan.slices.rows(i) ? "rows " : "experts ") +
         index_ranges(train) + " of " + std::to_string(E) + " train)";
}

std::string explain_text(const CompiledPlan& plan, uint32_t index, const Time& t,
                         const Time& horizon) {
  const Inventory& inv = *plan.inventory;
  const Param& p = inv.params()[index];
  std::ostringstream o;
  o << p.name;
  for (const auto& a : p.aliases) o << " = " << a;
  o << "\n";
  if (p.shape_known) {
    o << "  shape [";
    for (size_t k = 0; k < p.shape.size(); ++k) o << (k ? ", " : "") << p.shape[k];
    o << "]" << (p.dtype.empty() ? "" : " " + p.dtype) << " · " << with_commas(p.numel)
      << " parameters\n";
  }
  o << "  role: " << role_name(p.role);
  if (p.role == Role::kTower && p.part >= 0) {
    const Tower& t = inv.towers[static_cast<size_t>(p.part)];
    o << " (" << t.modality << ", `" << t.root << "`, " << t.num_layers
      << (t.num_layers == 1 ? " layer" : " layers");
    if (p.layer >= 0) {
      const Stack& st = inv.stacks[static_cast<size_t>(inv.layers[p.layer].stack)];
      o << "; its layer " << p.layer - st.first_layer << " in stack " << st.container << " ("
        << inv.layers[p.layer].name << ")";
    }
    o << "; found by " << t.found_by << ")";
  } else if (p.role == Role::kConnector && p.part >= 0) {
    const Connector& c = inv.connectors[static_cast<size_t>(p.part)];
    o << " (`" << c.root << "`: it carries a tower's output into the trunk)";
  } else if (p.role == Role::kMtp) {
    o << " (a multi-token-prediction block: the model's forward does not run it; frozen unless a "
         "rule names `mtp`)";
  } else if (p.layer >= 0) {
    const Stack& st = inv.stacks[inv.layers[p.layer].stack];
    o << " " << p.layer << " (" << inv.layers[p.layer].name << ", stack " << st.container
      << ", pattern '" << st.pattern << "')";
  }
  if (p.role == Role::kOther && p.anchor_layer >= 0)
    o << " (opens with layer " << p.anchor_layer << ")";
  o << "\n";
  for (size_t k = 0; k < p.aliases.size() && k < p.alias_roles.size(); ++k)
    o << "  alias " << p.aliases[k] << ": role " << role_name(p.alias_roles[k]) << "\n";
  if (!p.module_type.empty()) o << "  module type: " << p.module_type << "\n";

  o << "at " << time_text(t, plan.uses_steps) << ":\n";
  std::vector<std::pair<const PlanRule*, std::string>> hits;
  // A rule selects a fused expert tensor when it takes any of its experts.
  auto selects = [&](const PlanRule& r, int64_t period) {
    Selection s = r.set.eval(period, inv, plan.slices);
    return s.params.test(index) || plan.slices.count(index, s.slices) > 0;
  };
  for (const auto& r : plan.initial)
    if (selects(r, 0)) hits.push_back({&r, "initial rules"});
  for (const auto& st : plan.stages) {
    if (!st.fires(t)) continue;
    for (const auto& r : st.rules)
      if (selects(r, st.period_at(t))) hits.push_back({&r, st.label});
  }
  const bool fused = plan.slices.slot[index] >= 0;
  if (hits.empty()) {
    o << "  no rule selects it: TRAINABLE (the default)\n";
  } else {
    o << "  rules that select it, in the order they apply:\n";
    for (const auto& [r, where] : hits)
      o << "    " << r->prov.where() << "  " << r->prov.text << "  [" << where << "]\n";
    const PlanRule* last = hits.back().first;
    if (fused) {
      o << "  state: " << state_word(plan, plan.state_at(t), index) << " — each "
        << (plan.slices.rows(index) ? "row" : "expert")
        << " decided by the last of these rules that takes it\n";
      if (plan.slices.rows(index) && !p.aliases.empty())
        o << "  tied: one tensor under " << p.aliases.size() + 1
          << " names, so these rows are one set for all of them\n";
    } else {
      o << "  state: " << (last->action == Action::kFreeze ? "FROZEN" : "TRAINABLE")
        << " — decided by " << last->prov.where() << " (" << last->prov.text
        << "), the last rule that selects it\n";
    }
  }
  o << "over time:\n";
  bool prev_set = false;
  std::string prev;
  for (const auto& point : plan.timeline(horizon)) {
    std::string f = state_word(plan, {point.frozen, point.frozen_slices}, index);
    if (prev_set && f == prev) continue;
    o << "  " << time_text(point.at, plan.uses_steps) << ": " << f;
    if (!point.causes.empty())
      o << " (" << point.causes.front() << (point.causes.size() > 1 ? ", …" : "") << ")";
    o << "\n";
    prev_set = true;
    prev = f;
  }
  // Metric stages: the times above are where this plan places them, not certain.
  bool header = false;
  for (const auto& v : plan.metric_stages()) {
    bool takes = false;
    for (const auto& r : plan.watched[v.watch->id].rules) takes = takes || selects(r, 0);
    if (!takes) continue;
    if (!header)
      o << "metric stages that select it (docs/RULES.md, \"Metric triggers\"; --assume places "
           "them):\n";
    header = true;
    o << "  " << v.watch->label << ": " << v.watch->condition() << " · window " << v.window_text()
      << " · " << v.placement() << "\n";
  }
  return o.str();
}

std::string diff_text(const CompiledPlan& a, const CompiledPlan& b, const Time& horizon,
                      bool* differ) {
  const Inventory& inv = *a.inventory;
  std::ostringstream o;
  *differ = false;
  // Every time either plan changes, in order.
  struct When {
    int64_t key;
    Time t;
  };
  std::vector<When> times;
  auto add = [&](const CompiledPlan& p) {
    for (const auto& pt : p.timeline(horizon)) {
      int64_t key = pt.at.step >= 0 && (p.uses_steps) ? pt.at.step : pt.at.epoch;
      times.push_back({key, pt.at});
    }
  };
  add(a);
  add(b);
  std::stable_sort(times.begin(), times.end(),
                   [](const When& x, const When& y) { return x.key < y.key; });
  std::set<int64_t> seen;
  bool uses_steps = a.uses_steps || b.uses_steps;
  Bitset last_a, last_b;
  for (const auto& w : times) {
    if (!seen.insert(w.key).second) continue;
    Bitset fa = a.frozen_at(w.t), fb = b.frozen_at(w.t);
    if (fa == last_a && fb == last_b) continue;
    last_a = fa;
    last_b = fb;
    // Group differing parameters by layer, so a layer reads as one line.
    std::map<int32_t, std::pair<size_t, size_t>>
        by_layer;  // layer -> (frozen only in A, only in B)
    std::vector<std::string> loose;
    size_t count = 0;
    for (size_t i = 0; i < inv.params().size(); ++i) {
      bool x = fa.test(i), y = fb.test(i);
      if (x == y) continue;
      ++count;
      const Param& p = inv.params()[i];
      if (p.layer >= 0)
        (x ? by_layer[p.layer].first : by_layer[p.layer].second)++;
      else
        loose.push_back(p.name +
                        (x ? ": frozen in A, trainable in B" : ": trainable in A, frozen in B"));
    }
    o << time_text(w.t, uses_steps) << ": ";
    if (count == 0) {
      o << "same\n";
      continue;
    }
    *differ = true;
    o << count << (count == 1 ? " parameter differs" : " parameters differ") << "\n";
    // Consecutive layers that differ the same way read as one line.
    auto describe = [&](int32_t l, std::pair<size_t, size_t> c) {
      std::string d;
      bool whole = c.first + c.second == inv.layers[l].params.size();
      if (c.first)
        d += whole && !c.second ? "frozen in A, trainable in B"
                                : std::to_string(c.first) + " frozen in A only";
      if (c.first && c.second) d += ", ";
      if (c.second)
        d += whole && !c.first ? "trainable in A, frozen in B"
                               : std::to_string(c.second) + " frozen in B only";
      return d;
    };
    for (auto it = by_layer.begin(); it != by_layer.end();) {
      auto run_end = std::next(it);
      std::string what = describe(it->first, it->second);
      while (run_end != by_layer.end() && run_end->first == std::prev(run_end)->first + 1 &&
             describe(run_end->first, run_end->second) == what)
        ++run_end;
      int32_t first = it->first, last = std::prev(run_end)->first;
      if (first == last)
        o << "  layer " << first << " (" << inv.layers[first].name << "): " << what << "\n";
      else
        o << "  layers " << first << "–" << last << " (" << inv.layers[first].name << " – "
          << inv.layers[last].name << "): " << what << "\n";
      it = run_end;
    }
    for (const auto& s : loose) o << "  " << s << "\n";
  }
  return o.str();
}

}  // namespace layerfreeze
