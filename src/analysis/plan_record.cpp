#include "analysis/plan_record.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <map>

#include "analysis/plan_diff.hpp"
#include "analysis/plan_summary.hpp"
#include "core/json_text.hpp"

namespace layerfreeze {

namespace {

using nlohmann::json;

std::string shape_text(const json& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i].get<int64_t>());
  return s + "]";
}

std::string tensor_text(const json& t) {
  std::string dtype = t[1].get<std::string>();
  return "`" + t[0].get<std::string>() + "`" + (dtype.empty() ? "" : " " + dtype) + " " +
         shape_text(t[2]);
}

// Frozen indices as ranges [a, b), flattened: a compact record for large inventories.
json ranges_of(const Bitset& b) {
  json out = json::array();
  size_t i = 0;
  while (i < b.size()) {
    if (!b.test(i)) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < b.size() && b.test(j)) ++j;
    out.push_back(i);
    out.push_back(j);
    i = j;
  }
  return out;
}

std::vector<bool> set_of(const json& ranges, size_t n) {
  std::vector<bool> s(n, false);
  for (size_t k = 0; k + 1 < ranges.size(); k += 2)
    for (size_t i = ranges[k].get<size_t>(); i < std::min(n, ranges[k + 1].get<size_t>()); ++i)
      s[i] = true;
  return s;
}

struct Point {
  Time at;
  std::string cause;
  std::vector<bool> frozen;
};

struct Record {
  json j;
  std::vector<Point> points;
  bool uses_steps = false;

  std::string name(size_t i) const { return j["tensors"][i][0].get<std::string>(); }
};

bool parse_record(const std::string& text, Record& r) {
  try {
    r.j = json::parse(text);
    size_t n = r.j.at("tensors").size();
    r.uses_steps = r.j.at("uses_steps").get<bool>();
    for (const auto& p : r.j.at("points")) {
      Point pt;
      pt.at = Time{p.at("epoch").get<int64_t>(), p.at("step").get<int64_t>()};
      const auto& causes = p.at("causes");
      pt.cause = causes.empty() ? "start" : causes[0].get<std::string>();
      pt.frozen = set_of(p.at("frozen"), n);
      r.points.push_back(std::move(pt));
    }
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

std::string ranks_text(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i)
    s += (i == 0 ? "" : i + 1 == ranks.size() ? " and " : ", ") + std::to_string(ranks[i]);
  return s;
}

// The model: parameters only one rank has, else the first whose dtype or shape differs.
bool inventory_note(const Record& a, const Record& b, int rb, std::vector<std::string>& notes) {
  const json &ta = a.j["tensors"], &tb = b.j["tensors"];
  const std::string r = "rank " + std::to_string(rb);
  std::map<std::string, size_t> in_a, in_b;
  for (size_t i = 0; i < ta.size(); ++i) in_a.emplace(ta[i][0].get<std::string>(), i);
  for (size_t i = 0; i < tb.size(); ++i) in_b.emplace(tb[i][0].get<std::string>(), i);
  auto only = [&](const json& t, const std::map<std::string, size_t>& other,
                  const std::string& where) {
    size_t count = 0;
    std::string first;
    for (const auto& e : t)
      if (!other.count(e[0].get<std::string>()) && count++ == 0) first = e[0].get<std::string>();
    if (count == 0) return;
    notes.push_back(
        r + " loaded another model: `" + first + "`" +
        (count > 1 ? " and " + std::to_string(count - 1) + " more parameters exist" : " exists") +
        " only on " + where + " (" + std::to_string(ta.size()) + " parameters on rank 0, " +
        std::to_string(tb.size()) + " on " + r + ")");
  };
  size_t before = notes.size();
  only(ta, in_b, "rank 0");
  only(tb, in_a, r);
  if (notes.size() > before) return true;
  for (size_t i = 0; i < ta.size(); ++i) {
    const json& other = tb[in_b.at(ta[i][0].get<std::string>())];
    if (ta[i] == other) continue;
    notes.push_back(r + " loaded another model: " + tensor_text(ta[i]) + " on rank 0 is " +
                    tensor_text(other) + " on " + r);
    return true;
  }
  if (ta != tb) {
    notes.push_back(r + " loaded the same parameters in another order");
    return true;
  }
  if (a.j["inventory"] != b.j["inventory"]) {
    notes.push_back(
        r + " loaded a model with the same parameters but another layer structure (inventory " +
        b.j["inventory"].get<std::string>() + " vs " + a.j["inventory"].get<std::string>() + ")");
    return true;
  }
  return false;
}

void params_notes(const Record& a, const Record& b, int rb, std::vector<std::string>& notes) {
  std::string r = "rank " + std::to_string(rb);
  if (a.j["origin"] != b.j["origin"])
    notes.push_back("rules: " + a.j["origin"].get<std::string>() + " on rank 0, " +
                    b.j["origin"].get<std::string>() + " on " + r);
  std::map<std::string, std::pair<std::string, std::string>> both;
  for (auto& [k, v] : a.j["params"].items()) both[k].first = v.get<std::string>();
  for (auto& [k, v] : b.j["params"].items()) both[k].second = v.get<std::string>();
  for (const auto& [k, v] : both) {
    if (v.first == v.second) continue;
    notes.push_back("rules parameter `" + k +
                    "`: " + (v.first.empty() ? "(not declared)" : v.first) + " on rank 0, " +
                    (v.second.empty() ? "(not declared)" : v.second) + " on " + r);
  }
}

// What the canonical plans say differs beyond the states: policies and learning rates (the
// states are the timeline's). False when the plans differ in states or schedule too.
bool canonical_notes(const Record& a, const Record& b, int rb, std::vector<std::string>& notes) {
  // Every record carries its canonical plan (the ranks run one layerfreeze: their digests
  // would differ otherwise, and the records are read only then).
  if (!a.j.contains("canonical") || !b.j.contains("canonical")) return false;
  using Kind = PlanDiff::Item::Kind;
  const PlanDiff d = diff_canonical(a.j["canonical"], b.j["canonical"], nullptr, "rank 0",
                                    "rank " + std::to_string(rb));
  bool states = false;
  for (const auto& i : d.items) {
    if (i.kind == Kind::kPolicy || i.kind == Kind::kLearningRate)
      notes.push_back(i.where + ": " + i.what);
    states = states || i.kind == Kind::kState || i.kind == Kind::kSchedule;
  }
  return !states;
}

// "`x` is frozen on rank 0 and trainable on rank 1 (and 5 more parameters)".
std::string first_difference(const Record& a, const std::vector<bool>& fa,
                             const std::vector<bool>& fb, int rb) {
  size_t first = fa.size(), count = 0;
  for (size_t i = 0; i < fa.size(); ++i) {
    if (fa[i] == fb[i]) continue;
    if (count++ == 0) first = i;
  }
  if (count == 0) return "";
  std::string s = "`" + a.name(first) + "` is " + (fa[first] ? "frozen" : "trainable") +
                  " on rank 0 and " + (fb[first] ? "frozen" : "trainable") + " on rank " +
                  std::to_string(rb);
  if (count > 1)
    s += " (and " + std::to_string(count - 1) + " more parameter" + (count > 2 ? "s" : "") + ")";
  return s;
}

bool same_time(const Time& x, const Time& y) { return x.epoch == y.epoch && x.step == y.step; }

// Orders two change points of plans over the same model: by step where both know it, else epoch.
bool earlier(const Time& x, const Time& y) {
  if (x.step >= 0 && y.step >= 0 && x.step != y.step) return x.step < y.step;
  return x.epoch < y.epoch;
}

// The timeline: the first change point where the two plans part.
void timeline_note(const Record& a, const Record& b, int rb, std::vector<std::string>& notes) {
  bool steps = a.uses_steps || b.uses_steps;
  std::string r = "rank " + std::to_string(rb);
  const auto &pa = a.points, &pb = b.points;
  for (size_t k = 0; k < std::max(pa.size(), pb.size()); ++k) {
    bool ha = k < pa.size(), hb = k < pb.size();
    if (ha && hb && same_time(pa[k].at, pb[k].at)) {
      std::string d = first_difference(a, pa[k].frozen, pb[k].frozen, rb);
      if (d.empty()) continue;
      notes.push_back("first difference at " + time_text(pa[k].at, steps) + " (" + pa[k].cause +
                      "): " + d);
      return;
    }
    // The plans change at different times; before point k they were identical.
    bool a_first = ha && (!hb || earlier(pa[k].at, pb[k].at));
    const Point& p = a_first ? pa[k] : pb[k];
    const std::vector<bool>& before = a_first ? pb[k - 1].frozen : pa[k - 1].frozen;
    std::string when =
        a_first ? "rank 0's plan changes at " + time_text(p.at, steps) + " (" + p.cause + ")"
                : r + "'s plan changes at " + time_text(p.at, steps) + " (" + p.cause + ")";
    std::string other = !(a_first ? hb : ha)
                            ? "; the other's does not change again"
                            : "; the other's at " + time_text((a_first ? pb[k] : pa[k]).at, steps);
    std::string d = a_first ? first_difference(a, p.frozen, before, rb)
                            : first_difference(a, before, p.frozen, rb);
    notes.push_back("first difference: " + when + other + (d.empty() ? "" : ": then " + d));
    return;
  }
  notes.push_back(
      "the plans agree on every state up to " +
      time_text(Time{a.j["horizon"][0].get<int64_t>(), a.j["horizon"][1].get<int64_t>()}, steps) +
      " and part later (periodic stages with another seed or period); `layerfreeze diff` shows "
      "where");
}

}  // namespace

PlanDigest plan_digest(const CompiledPlan& plan) {
  PlanDigest d{};
  std::string s = plan.fingerprint() + " " + plan.inventory->fingerprint();
  std::memcpy(d.data(), s.data(), std::min(s.size(), d.size()));
  return d;
}

std::string digest_text(const PlanDigest& d) {
  std::string s(d.data(), strnlen(d.data(), d.size()));
  auto sp = s.find(' ');
  if (sp == std::string::npos) return "plan " + s;
  return "plan " + s.substr(0, sp) + " · inventory " + s.substr(sp + 1);
}

std::string plan_record(const CompiledPlan& plan, const Time& horizon) {
  const Inventory& inv = *plan.inventory;
  json j;
  j["version"] = 1;
  j["plan"] = plan.fingerprint();
  j["inventory"] = inv.fingerprint();
  j["origin"] = plan.origin;
  j["uses_steps"] = plan.uses_steps;
  j["horizon"] = {horizon.epoch, horizon.step};
  json params = json::object();
  for (const auto& [k, v] : plan.params) params[k] = v.to_string();
  j["params"] = params;
  json tensors = json::array();
  for (const auto& p : inv.params()) tensors.push_back({p.name, p.dtype, p.shape});
  j["tensors"] = std::move(tensors);
  json points = json::array();
  for (const auto& pt : plan.timeline(horizon)) {
    points.push_back({{"epoch", pt.at.epoch},
                      {"step", pt.at.step},
                      {"causes", pt.causes},
                      {"frozen", ranges_of(pt.frozen)}});
  }
  j["points"] = std::move(points);
  j["canonical"] = json::parse(plan.canonical());
  return json_text(j);
}

std::vector<int> disagreeing_ranks(const std::vector<PlanDigest>& digests) {
  std::vector<int> out;
  for (size_t r = 1; r < digests.size(); ++r)
    if (digests[r] != digests[0]) out.push_back(static_cast<int>(r));
  return out;
}

Disagreement explain_disagreement(const std::vector<PlanDigest>& digests,
                                  const std::vector<std::string>& records) {
  Disagreement d;
  std::vector<int> differ = disagreeing_ranks(digests);
  d.message = "the ranks disagree on the freezing plan: " + ranks_text(differ) + " of " +
              std::to_string(digests.size()) + (differ.size() == 1 ? " differs" : " differ") +
              " from rank 0";
  Record base;
  bool base_ok = !records.empty() && parse_record(records[0], base);
  for (int r : differ) {
    std::vector<std::string> notes;
    notes.push_back("rank 0: " + digest_text(digests[0]) + "; rank " + std::to_string(r) + ": " +
                    digest_text(digests[r]));
    Record other;
    if (!base_ok || static_cast<size_t>(r) >= records.size() ||
        !parse_record(records[static_cast<size_t>(r)], other)) {
      notes.push_back("rank " + std::to_string(r) + " sent no readable plan record");
    } else if (!inventory_note(base, other, r, notes)) {
      params_notes(base, other, r, notes);
      if (!canonical_notes(base, other, r, notes)) timeline_note(base, other, r, notes);
    }
    d.notes.insert(d.notes.end(), notes.begin(), notes.end());
  }
  d.notes.push_back(
      "every rank must compile the same rules, parameters and model; a plan is a pure function of "
      "them");
  return d;
}

}  // namespace layerfreeze
