#include "layerfreeze/expert_stats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <numeric>

#include "core/expert_config.hpp"
#include "core/file_access.hpp"
#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

namespace {

[[noreturn]] void fail(const std::string& code, const std::string& msg) {
  Diagnostics d;
  d.error(code, msg);
  throw DiagnosticError(std::move(d));
}

}  // namespace

ExpertStats::ExpertStats(int64_t num_experts, int64_t top_k)
    : experts_(num_experts), top_k_(top_k) {
  if (num_experts <= 0 || top_k <= 0 || top_k > num_experts)
    fail("bad-value", fmt::format("ExpertStats needs 0 < top_k <= num_experts (got top_k {}, "
                                  "num_experts {})",
                                  top_k, num_experts));
}

void ExpertStats::add(int32_t layer, const int64_t* indices, const float* weights, int64_t tokens) {
  if (layer < 0) fail("bad-value", fmt::format("ExpertStats: layer {} is negative", layer));
  Layer& l = layers_[layer];
  if (l.gate.empty()) {
    l.gate.assign(static_cast<size_t>(experts_), 0.0);
    l.token.assign(static_cast<size_t>(experts_), 0.0);
  }
  const int64_t n = tokens * top_k_;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t e = indices[k];
    if (e < 0 || e >= experts_)
      fail("out-of-range", fmt::format("ExpertStats: layer {}: expert {} is out of range (the "
                                       "model has {} experts per layer)",
                                       layer, e, experts_));
    if (weights && !(weights[k] >= 0))
      fail("bad-value", fmt::format("ExpertStats: layer {}: gate weight {} is not a "
                                    "non-negative number",
                                    layer, weights[k]));
  }
  for (int64_t k = 0; k < n; ++k) {
    const auto e = static_cast<size_t>(indices[k]);
    l.token[e] += 1.0 / static_cast<double>(top_k_);
    if (weights) l.gate[e] += weights[k];
  }
  l.weighted = l.weighted && weights != nullptr;
  l.tokens += tokens;
}

void ExpertStats::add(int32_t layer, const std::vector<int64_t>& indices,
                      const std::vector<float>& weights) {
  if (indices.size() % static_cast<size_t>(top_k_) != 0 ||
      (!weights.empty() && weights.size() != indices.size()))
    fail("bad-value", fmt::format("ExpertStats: layer {}: {} indices and {} weights are not "
                                  "rows of top_k = {}",
                                  layer, indices.size(), weights.size(), top_k_));
  add(layer, indices.data(), weights.empty() ? nullptr : weights.data(),
      static_cast<int64_t>(indices.size()) / top_k_);
}

std::vector<int32_t> ExpertStats::layers() const {
  std::vector<int32_t> out;
  for (const auto& [l, _] : layers_) out.push_back(l);
  return out;
}

int64_t ExpertStats::tokens(int32_t layer) const {
  auto it = layers_.find(layer);
  return it == layers_.end() ? 0 : it->second.tokens;
}

std::vector<double> ExpertStats::scores(int32_t layer, Rule rule) const {
  std::vector<double> out(static_cast<size_t>(experts_), 0.0);
  auto it = layers_.find(layer);
  if (it == layers_.end()) return out;
  if (rule == Rule::kGate && !it->second.weighted)
    fail("bad-value", fmt::format("ExpertStats: layer {} was fed without gate weights; the "
                                  "gate rule needs them (use the token rule)",
                                  layer));
  const auto& raw = rule == Rule::kGate ? it->second.gate : it->second.token;
  const double sum = std::accumulate(raw.begin(), raw.end(), 0.0);
  if (sum > 0)
    for (size_t e = 0; e < raw.size(); ++e) out[e] = raw[e] / sum;
  return out;
}

std::map<int32_t, std::vector<int32_t>> ExpertStats::select(Rule rule, double p) const {
  std::map<int32_t, std::vector<int32_t>> out;
  for (const auto& [layer, _] : layers_) {
    auto s = scores(layer, rule);
    std::vector<int32_t> order(s.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return s[static_cast<size_t>(a)] > s[static_cast<size_t>(b)];
    });
    auto& chosen = out[layer];
    double total = 0;
    for (int32_t e : order) {
      if (total >= p) break;
      chosen.push_back(e);
      total += s[static_cast<size_t>(e)];
    }
  }
  return out;
}

std::string ExpertStats::esft_json(Rule rule, double p, bool shared_experts,
                                   bool non_expert_modules) const {
  ExpertConfig c;
  c.experts = select(rule, p);
  c.shared_experts = shared_experts;
  c.non_expert_modules = non_expert_modules;
  return expert_config_json(c);
}

void ExpertStats::write(const std::string& path, Rule rule, double p, bool shared_experts,
                        bool non_expert_modules) const {
  std::string error;
  if (!write_file_atomic(path, esft_json(rule, p, shared_experts, non_expert_modules), &error))
    fail("write-failed", "ExpertStats: " + error);
}

}  // namespace layerfreeze
