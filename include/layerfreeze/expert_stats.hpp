// ExpertStats: which experts a task uses, for Expert-Specialized Fine-Tuning (ESFT, Wang et al.,
// EMNLP 2024; docs/EXPERTS.md). A trainer feeds it each mixture-of-experts layer's routing —
// every token's top-k expert indices and gate weights — over a few batches of task data, then
// writes the ESFT expert config that preset:esft reads:
//
//   layerfreeze::ExpertStats stats(/*num_experts=*/64, /*top_k=*/6);
//   for (batch : task_data) for (layer : moe_layers)
//     stats.add(layer, idx.data_ptr<int64_t>(), w.data_ptr<float>(), tokens);  // [tokens, k]
//   stats.write("expert_config.json", layerfreeze::ExpertStats::Rule::kToken, 0.2);
//
// Both of ESFT's rules: the average gate score of each expert (ESFT-Gate) or the share of token
// selections it receives (ESFT-Token), normalized per layer to sum to 1; a layer keeps the
// smallest set of experts, highest scores first, whose scores sum to at least p (ESFT uses 0.1
// for the gate rule and 0.2 for the token rule). Ties go to the lower expert index.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace layerfreeze {

class ExpertStats {
 public:
  enum class Rule { kGate, kToken };

  /// Throws DiagnosticError unless 0 < top_k <= num_experts.
  ExpertStats(int64_t num_experts, int64_t top_k);

  /// One batch of one layer's routing: `tokens` rows of `top_k` expert indices and (optional:
  /// nullptr) their gate weights, row-major. Layers are numbered as `layers:` counts them.
  /// Throws DiagnosticError for an index outside [0, num_experts) or a negative weight.
  void add(int32_t layer, const int64_t* indices, const float* weights, int64_t tokens);
  void add(int32_t layer, const std::vector<int64_t>& indices, const std::vector<float>& weights);

  /// The layers seen, ascending.
  std::vector<int32_t> layers() const;
  /// A layer's expert scores under `rule`, normalized to sum to 1 (all 0 for a layer without
  /// data; the gate rule needs weights).
  std::vector<double> scores(int32_t layer, Rule rule) const;
  /// Per layer, the smallest set of experts whose scores sum to at least `p`, highest first.
  std::map<int32_t, std::vector<int32_t>> select(Rule rule, double p) const;
  /// The ESFT expert config (JSON, ESFT's format) of select(rule, p).
  std::string esft_json(Rule rule, double p, bool shared_experts = false,
                        bool non_expert_modules = false) const;
  /// Writes esft_json to `path`; throws DiagnosticError when it cannot.
  void write(const std::string& path, Rule rule, double p, bool shared_experts = false,
             bool non_expert_modules = false) const;

  int64_t tokens(int32_t layer) const;

 private:
  struct Layer {
    std::vector<double> gate, token;
    int64_t tokens = 0;
    bool weighted = true;
  };
  int64_t experts_, top_k_;
  std::map<int32_t, Layer> layers_;
};

}  // namespace layerfreeze
