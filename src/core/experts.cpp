#include "core/experts.hpp"
#include "core/structure_draft.hpp"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <set>
#include <string_view>

namespace layerfreeze {

namespace {

using Regexes = std::vector<std::unique_ptr<RE2>>;

bool compile_all(const std::vector<Pattern>& patterns, const char* what, Diagnostics& diags,
                 Regexes& out) {
  bool ok = true;
  for (const auto& p : patterns) {
    auto re = compile_pattern(p, what, diags);
    if (re)
      out.push_back(std::move(re));
    else
      ok = false;
  }
  return ok;
}

bool matches(const Regexes& res, const std::string& s) {
  for (const auto& re : res)
    if (RE2::FullMatch(s, *re)) return true;
  return false;
}

// Whether a container key ("model.layers.7.mlp.experts.#") is an experts container, remembered
// for the last few prefixes: the parameters of a layer share them, and a 100k-tensor MoE would
// otherwise run a regex per numeric component of every name.
class ExpertKeys {
 public:
  explicit ExpertKeys(const Regexes& experts) : experts_(experts) {}

  bool is_experts_container(std::string_view prefix) {  // prefix: the key without its '#'
    if (last_ < recent_.size() && recent_[last_].first == prefix) return recent_[last_].second;
    for (size_t k = 0; k < recent_.size(); ++k)
      if (recent_[k].first == prefix) {
        last_ = k;
        return recent_[k].second;
      }
    std::string key(prefix);
    key += '#';
    const bool yes = matches(experts_, key);
    key.pop_back();
    if (recent_.size() < 8) {
      last_ = recent_.size();
      recent_.emplace_back(std::move(key), yes);
    } else {
      last_ = next_++ % recent_.size();
      recent_[last_] = {std::move(key), yes};
    }
    return yes;
  }

  // The expert index of a routed expert's parameter: the innermost numeric component whose
  // container key an experts pattern matches.
  std::optional<int32_t> routed_index(const std::string& name) {
    // Components from the innermost; the last one is never a container's index, nor the first.
    const char* d = name.data();
    size_t end = name.rfind('.');
    while (end != std::string::npos && end > 0) {
      size_t start = end;
      int32_t value = 0;
      size_t digits = 0;
      while (start > 0 && d[start - 1] >= '0' && d[start - 1] <= '9') --start, ++digits;
      if (digits > 0 && digits <= 9 && start > 0 && d[start - 1] == '.') {
        for (size_t k = start; k < end; ++k) value = value * 10 + (d[k] - '0');
        if (is_experts_container(std::string_view(d, start))) return value;
      }
      while (start > 0 && d[start - 1] != '.') --start;  // to the previous dot
      if (start == 0) break;
      end = start - 1;
    }
    return std::nullopt;
  }

 private:
  const Regexes& experts_;
  std::vector<std::pair<std::string, bool>> recent_;
  size_t next_ = 0, last_ = 0;
};

}  // namespace

void discover_experts(Inventory& inv, const DiscoveryPatterns& patterns, Diagnostics& diags) {
  StructureDraft draft(inv);
  if (inv.num_experts > 0)  // discovery ran before (overrides): start from nothing
    draft.place_all([](Placement& p) {
      p.expert_part = ExpertPart::kNone;
      p.expert = -1;
    });
  inv.num_experts = 0;
  Regexes experts, fused, shared, routers;
  bool ok = compile_all(patterns.experts, "experts", diags, experts);
  ok = compile_all(patterns.fused_experts, "fused_experts", diags, fused) && ok;
  ok = compile_all(patterns.shared_experts, "shared_experts", diags, shared) && ok;
  ok = compile_all(patterns.routers, "routers", diags, routers) && ok;
  if (!ok) return;

  // Layer by layer (its parameters stay in cache): routed and fused experts make it a
  // mixture-of-experts layer, and only then are shared experts and routers looked for.
  ExpertKeys keys(experts);
  int32_t highest = -1;
  int64_t router_rows = 0;
  bool any = false;
  for (int32_t l = 0; l < inv.num_layers(); ++l) {
    const auto& members = inv.layers[static_cast<size_t>(l)].params;
    bool moe = false;
    for (uint32_t i : members) {
      const Param& t = inv.params()[i];
      Placement& p = draft.place(i);
      if (p.role != Role::kLayer) continue;
      if (auto e = keys.routed_index(t.name)) {
        p.expert_part = ExpertPart::kRouted;
        p.expert = *e;
        highest = std::max(highest, *e);
        moe = true;
      } else if (matches(fused, t.name)) {
        p.expert_part = ExpertPart::kFused;
        moe = true;
      }
    }
    if (!moe) continue;
    any = true;
    for (uint32_t i : members) {
      const Param& t = inv.params()[i];
      Placement& p = draft.place(i);
      if (p.role != Role::kLayer || p.expert_part != ExpertPart::kNone) continue;
      if (matches(shared, t.name)) {
        p.expert_part = ExpertPart::kShared;
      } else if (matches(routers, t.name)) {
        p.expert_part = ExpertPart::kRouter;
        if (router_rows == 0 && t.shape_known && t.shape.size() == 2) router_rows = t.shape[0];
      }
    }
  }
  if (!any) return;
  // How many experts: the config says; else a router has one row per expert; else the indices.
  const int64_t config_experts = inv.facts().config_experts;
  inv.num_experts = config_experts > 0 ? config_experts
                    : router_rows > 0  ? router_rows
                                       : highest + 1;
  if (inv.num_experts <= 0) {
    inv.notes.push_back(
        "fused expert tensors found, but neither the config nor a router says how many experts "
        "they hold");
    return;
  }
  if (highest >= inv.num_experts)
    inv.notes.push_back(
        fmt::format("a routed expert's index ({}) is not below the expert count "
                    "({}) the {} states",
                    highest, inv.num_experts, config_experts > 0 ? "config" : "router"));
  // A fused tensor holds every expert along its first dimension; one that does not is not fused.
  std::vector<std::string> not_fused;
  for (uint32_t i = 0; i < inv.params().size(); ++i) {
    const Param& p = inv.params()[i];
    if (p.expert_part == ExpertPart::kFused && p.shape_known && !p.shape.empty() &&
        p.shape[0] != inv.num_experts) {
      draft.place(i).expert_part = ExpertPart::kNone;
      not_fused.push_back(p.name);
    }
  }
  if (!not_fused.empty())
    inv.notes.push_back(fmt::format(
        "{} tensor(s) named like fused experts do not have {} experts along their first "
        "dimension and are not treated as fused (first: {})",
        not_fused.size(), inv.num_experts, not_fused.front()));
}

std::string describe_layer_experts(const Inventory& inv, size_t layer) {
  if (layer >= inv.layers.size()) return "";
  std::set<int32_t> routed;
  size_t fused = 0;
  bool shared = false, router = false;
  for (uint32_t i : inv.layers[layer].params) {
    const Param& p = inv.params()[i];
    switch (p.expert_part) {
      case ExpertPart::kRouted: routed.insert(p.expert); break;
      case ExpertPart::kFused: ++fused; break;
      case ExpertPart::kShared: shared = true; break;
      case ExpertPart::kRouter: router = true; break;
      case ExpertPart::kNone: break;
    }
  }
  if (routed.empty() && fused == 0) return "";
  std::string out;
  if (!routed.empty()) out = fmt::format("{} experts", routed.size());
  if (fused > 0)
    out += fmt::format("{}{} experts fused in {} tensor{}", out.empty() ? "" : " + ",
                       inv.num_experts, fused, fused == 1 ? "" : "s");
  if (shared) out += " · shared expert";
  if (router) out += " · router";
  return out;
}

std::string index_ranges(const std::vector<int32_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    out += (out.empty() ? "" : ", ") + std::to_string(v[i]);
    if (j > i) out += "-" + std::to_string(v[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace layerfreeze
