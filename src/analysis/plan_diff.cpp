#include "analysis/plan_diff.hpp"
#include "core/json_text.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace layerfreeze {

namespace {

using nlohmann::json;

// A set of tensor indices as sorted, disjoint, non-adjacent closed intervals: a hand-edited or
// hostile lock ("0-99999999999" at every change point) costs the length of its text, never the
// size of what it names.
using Intervals = std::vector<std::pair<size_t, size_t>>;

Intervals normalized(Intervals v) {
  std::sort(v.begin(), v.end());
  Intervals out;
  for (const auto& [a, b] : v) {
    if (!out.empty() && a <= out.back().second + 1)
      out.back().second = std::max(out.back().second, b);
    else
      out.emplace_back(a, b);
  }
  return out;
}

// "0-3,7" -> [0,3] [7,7], or the "hex:" form of set_text. A malformed text (a hand-edited
// lock) reads as far as it parses.
Intervals parse_ranges(const std::string& text) {
  Intervals out;
  if (text.rfind("hex:", 0) == 0) {
    for (size_t d = 4; d < text.size(); ++d) {
      const char c = text[d];
      const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (v < 0) break;
      const size_t digit = d - 4, word = digit / 16, nibble = 15 - digit % 16;
      for (int bit = 0; bit < 4; ++bit)
        if (v >> bit & 1) {
          const size_t k = word * 64 + nibble * 4 + static_cast<size_t>(bit);
          out.emplace_back(k, k);
        }
    }
    return normalized(std::move(out));
  }
  size_t i = 0;
  auto number = [&](size_t& v) {
    if (i >= text.size() || text[i] < '0' || text[i] > '9') return false;
    v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && v < (size_t{1} << 40))
      v = v * 10 + static_cast<size_t>(text[i++] - '0');
    return true;
  };
  while (i < text.size()) {
    size_t a = 0, b = 0;
    if (!number(a)) break;
    b = a;
    if (i < text.size() && text[i] == '-') {
      ++i;
      if (!number(b)) break;
    }
    if (a <= b) out.emplace_back(a, b);
    if (i < text.size() && text[i] == ',') ++i;
  }
  return normalized(std::move(out));
}

size_t count(const Intervals& v) {
  size_t n = 0;
  for (const auto& [a, b] : v) n += b - a + 1;
  return n;
}

// What `x` holds and `y` does not, as intervals (both normalized).
Intervals minus(const Intervals& x, const Intervals& y) {
  Intervals out;
  size_t j = 0;
  for (auto [a, b] : x) {
    while (j < y.size() && y[j].second < a) ++j;
    size_t k = j;
    while (a <= b && k < y.size() && y[k].first <= b) {
      if (y[k].first > a) out.emplace_back(a, y[k].first - 1);
      if (y[k].second >= b) {
        a = b + 1;
        break;
      }
      a = std::max(a, y[k].second + 1);
      ++k;
    }
    if (a <= b) out.emplace_back(a, b);
  }
  return out;
}

std::string value_text(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_string()) return v.get<std::string>();
  return json_text(v);
}

struct Differ {
  const Inventory* names;
  std::string la, lb;
  PlanDiff out;
  std::string slice_noun = "expert slice";  // "row or expert slice" when rows are cut

  using Kind = PlanDiff::Item::Kind;
  void add(Kind kind, std::string where, std::string what) {
    out.items.push_back({kind, std::move(where), std::move(what)});
  }
  std::string sides(const json& a, const json& b) const {
    return value_text(a) + " in " + la + ", " + value_text(b) + " in " + lb;
  }

  // Keys of two objects, each key's values compared.
  void object(Kind kind, const std::string& prefix, const json& a, const json& b,
              const char* missing) {
    std::set<std::string> keys;
    for (auto& [k, v] : a.items()) keys.insert(k);
    for (auto& [k, v] : b.items()) keys.insert(k);
    for (const auto& k : keys) {
      json x = a.contains(k) ? a.at(k) : json(missing);
      json y = b.contains(k) ? b.at(k) : json(missing);
      if (x != y) add(kind, prefix + k, sides(x, y));
    }
  }

  // "`model.layers.3.mlp.weight` and 5 more", or "tensors #12, #13" without names.
  std::string tensors(const Intervals& v) const {
    std::string s;
    size_t shown = 0;
    for (const auto& [a, b] : v)
      for (size_t k = a; k <= b && shown < 3; ++k, ++shown) {
        s += shown ? ", " : "";
        if (names && k < names->params().size())
          s += "`" + names->params()[k].name + "`";
        else
          s += "#" + std::to_string(k);
      }
    const size_t total = count(v);
    if (total > shown) s += " and " + std::to_string(total - shown) + " more";
    return s;
  }

  void state(const std::string& when, const std::string& key, const char* noun, const json& a,
             const json& b) {
    auto sa = parse_ranges(a.value(key, std::string())), sb = parse_ranges(b.value(key, ""));
    if (sa == sb) return;
    const Intervals only_a = minus(sa, sb), only_b = minus(sb, sa);
    const size_t na = count(only_a), nb = count(only_b);
    std::string s;
    if (na > 0)
      s += std::to_string(na) + " " + noun + (na == 1 ? "" : "s") + " frozen in " + la + " only" +
           (key == "frozen" ? " (" + tensors(only_a) + ")" : "");
    if (nb > 0)
      s += std::string(s.empty() ? "" : "; ") + std::to_string(nb) + " " + noun +
           (nb == 1 ? "" : "s") + " frozen in " + lb + " only" +
           (key == "frozen" ? " (" + tensors(only_b) + ")" : "");
    add(Kind::kState, when, s);
  }

  static std::string when_of(const json& at) {
    const json& e = at.at("epoch");
    const json& s = at.at("step");
    if (!e.is_null() && !s.is_null())
      return "epoch " + json_text(e) + " (step " + json_text(s) + ")";
    return e.is_null() ? "step " + json_text(s) : "epoch " + json_text(e);
  }

  // A time of an untrusted plan: anything but an integer ends the comparison (as a json
  // exception, which diff_canonical reports), never a float converted out of range.
  static int64_t integer(const json& v) {
    if (!v.is_number_integer())
      throw json::type_error::create(
          302, std::string("a time must be an integer, not ") + v.type_name(), &v);
    return v.get<int64_t>();
  }

  // Orders change points by step where both know it, else by epoch.
  static bool earlier(const json& x, const json& y) {
    const json &xs = x.at("step"), &ys = y.at("step");
    if (!xs.is_null() && !ys.is_null() && xs != ys) return integer(xs) < integer(ys);
    const json &xe = x.at("epoch"), &ye = y.at("epoch");
    if (xe.is_null() || ye.is_null()) return false;
    return integer(xe) < integer(ye);
  }

  std::string groups_text(const json& g) const {
    if (g.is_null() || g.empty()) return "the plan's unfreeze_lr_scale";
    std::string s;
    for (const auto& x : g) {
      s += s.empty() ? "" : "; ";
      size_t n = count(parse_ranges(x.value("tensors", "")));
      s += (x.contains("lr") ? "lr " + value_text(x["lr"]) : "lr ×" + value_text(x["lr_scale"])) +
           " for " + std::to_string(n) + " tensor" + (n == 1 ? "" : "s");
    }
    return s;
  }

  // Metric-triggered stages by id: the trigger (metric, mode, patience, min_delta, window),
  // the resolved rules and the learning rate of what they open.
  void metric_stages(const json& a, const json& b) {
    for (size_t k = 0; k < std::max(a.size(), b.size()); ++k) {
      const std::string where = "metric stage " + std::to_string(k + 1);
      if (k >= a.size() || k >= b.size()) {
        add(Kind::kSchedule, where, "only in " + (k < a.size() ? la : lb));
        continue;
      }
      const json &x = a[k], &y = b[k];
      if (x == y) continue;
      const json px = x.value("plateau", json::object()), py = y.value("plateau", json::object());
      for (const auto& [key, vx] : px.items()) {
        json vy = py.value(key, json());
        if (vx != vy) add(Kind::kSchedule, where, key + ": " + sides(vx, vy));
      }
      if (x.value("rules", json()) != y.value("rules", json()))
        add(Kind::kSchedule, where, "its resolved rules differ");
      for (const char* key : {"lr", "lr_scale"}) {
        json vx = x.value(key, json()), vy = y.value(key, json());
        if (vx != vy) add(Kind::kLearningRate, where, std::string(key) + ": " + sides(vx, vy));
      }
    }
  }

  void changes(const json& a, const json& b) {
    const json &ca = a.at("changes"), &cb = b.at("changes");
    size_t i = 0, k = 0;
    const json empty = json::object();
    while (i < ca.size() || k < cb.size()) {
      const json* x = i < ca.size() ? &ca[i] : nullptr;
      const json* y = k < cb.size() ? &cb[k] : nullptr;
      if (x && y && x->at("at") == y->at("at")) {
        const std::string when = when_of(x->at("at"));
        if (*x != *y) {
          state(when, "frozen", "tensor", *x, *y);
          state(when, "frozen_slices", slice_noun.c_str(), *x, *y);
          const json ga = x->value("groups", json()), gb = y->value("groups", json());
          if (ga != gb)
            add(Kind::kLearningRate, when,
                "the param groups it opens: " + groups_text(ga) + " in " + la + ", " +
                    groups_text(gb) + " in " + lb);
          for (const char* key : {"every", "rules", "lr", "lr_scale"}) {
            json vx = x->value(key, json()), vy = y->value(key, json());
            if (vx == vy) continue;
            const bool lr = std::string(key).rfind("lr", 0) == 0;
            add(lr ? Kind::kLearningRate : Kind::kSchedule, when,
                std::string(key) == "rules" ? "its resolved rules differ"
                                            : std::string(key) + ": " + sides(vx, vy));
          }
        }
        ++i, ++k;
        continue;
      }
      const bool a_first = x && (!y || earlier(x->at("at"), y->at("at")));
      const json& p = a_first ? *x : *y;
      add(Kind::kSchedule, when_of(p.at("at")),
          (a_first ? la : lb) + " changes state here, " + (a_first ? lb : la) + " does not");
      (a_first ? i : k)++;
    }
  }
};

}  // namespace

PlanDiff diff_canonical(const json& a, const json& b, const Inventory* names,
                        const std::string& label_a, const std::string& label_b) {
  Differ d{nullptr, label_a, label_b, {}};
  // A lock's canonical plan is untrusted (docs/SECURITY.md): any field of another type ends the
  // comparison with an item that says so, never with an exception.
  try {
    if (a.value("format", json()) != b.value("format", json())) {
      d.add(PlanDiff::Item::Kind::kSchedule, "format",
            d.sides(a.value("format", json()), b.value("format", json())));
      return d.out;
    }
    const json &ma = a.at("model"), &mb = b.at("model");
    const bool same_model = ma == mb;
    if (ma.at("inventory") != mb.at("inventory"))
      d.add(PlanDiff::Item::Kind::kModel, "model",
            "another inventory (fingerprint " + d.sides(ma["inventory"], mb["inventory"]) + ")");
    else if (ma.at("structure") != mb.at("structure"))
      d.add(PlanDiff::Item::Kind::kModel, "model",
            "the same tensors with another discovered structure (layers, roles: " +
                d.sides(ma["structure"], mb["structure"]) + ")");
    if (ma.value("row_tensors", json()) != mb.value("row_tensors", json()))
      d.add(PlanDiff::Item::Kind::kModel, "rows",
            "the row selectors cut other tensors into rows (" +
                d.sides(ma.value("row_tensors", json()), mb.value("row_tensors", json())) + ")");
    if (ma.contains("row_tensors") || mb.contains("row_tensors"))
      d.slice_noun = "row or expert slice";
    d.names = same_model ? names : nullptr;
    d.object(PlanDiff::Item::Kind::kParameter, "parameter ", a.at("params"), b.at("params"),
             "(not declared)");
    d.object(PlanDiff::Item::Kind::kPolicy, "policy ", a.at("policies"), b.at("policies"),
             "(none)");
    if (a.at("form") != b.at("form")) {
      d.add(PlanDiff::Item::Kind::kSchedule, "schedule",
            a["form"] == "rules"
                ? d.la + " has periodic or metric-triggered stages, " + d.lb + " has none"
                : d.lb + " has periodic or metric-triggered stages, " + d.la + " has none");
      return d.out;
    }
    if (a.at("start") != b.at("start")) {
      d.state("start", "frozen", "tensor", a["start"], b["start"]);
      d.state("start", "frozen_slices", d.slice_noun.c_str(), a["start"], b["start"]);
    }
    if (a.value("initial", json()) != b.value("initial", json()))
      d.add(PlanDiff::Item::Kind::kSchedule, "start", "the resolved initial rules differ");
    d.changes(a, b);
    d.metric_stages(a.value("metric_stages", json::array()),
                    b.value("metric_stages", json::array()));
  } catch (const json::exception& e) {
    d.add(PlanDiff::Item::Kind::kSchedule, "plan",
          std::string("a canonical plan is incomplete: ") + e.what());
  }
  if (!d.out.differs() && a != b)
    d.add(PlanDiff::Item::Kind::kSchedule, "plan", "the canonical plans differ");
  return d.out;
}

}  // namespace layerfreeze
