// The seed API (shared/seed/layer_utils.md) in C++: freezing helpers for any torch::nn::Module
// (and TorchScript modules where it makes sense), implemented through the shipped presets, the
// compiler and the executor — one source of truth for every strategy. Semantics: docs/API.md, "The
// seed API".
//
// Freeze functions are imperative and compose: each freezes what it selects (requires_grad =
// false, gradient dropped) and leaves every other parameter as it is. They return the number of
// scalar parameters selected. Invalid arguments throw std::invalid_argument naming the model's
// layer count.
#pragma once

#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layerfreeze/executor.hpp"
#include "layerfreeze/optimizer_kind.hpp"
#include "layerfreeze/prefix_cache.hpp"

namespace layerfreeze {

int64_t freeze_model(torch::nn::Module& model);
int64_t freeze_first_n_layers(torch::nn::Module& model, int64_t n);
int64_t freeze_last_n_layers(torch::nn::Module& model, int64_t n);
int64_t freeze_except_last_n(torch::nn::Module& model, int64_t n);
int64_t freeze_embeddings(torch::nn::Module& model);
int64_t freeze_by_name(torch::nn::Module& model, const std::vector<std::string>& patterns,
                       bool case_sensitive = true);
int64_t freeze_by_name(torch::nn::Module& model, const std::string& pattern,
                       bool case_sensitive = true);
/// Makes every parameter trainable; returns the model's total numel.
int64_t unfreeze_model(torch::nn::Module& model);

int64_t get_trainable_params(const torch::nn::Module& model);
double get_frozen_percentage(const torch::nn::Module& model);  // 0..100
int64_t get_num_layers(const torch::nn::Module& model);

void print_layer_status(const torch::nn::Module& model, bool show_all = false,
                        std::ostream& out = std::cout);
std::string layer_status(const torch::nn::Module& model, bool show_all = false);

/// The pace of a GradualUnfreezer set by a validation metric instead of the calendar
/// (preset:unfreeze_on_plateau; docs/RULES.md, "Metric triggers"): one more layer each time
/// `metric` stops improving — `patience` reports that do not beat the best by more than
/// `min_delta` — and at the latest `max_epochs_per_layer` epochs after the previous one.
struct PlateauSchedule {
  std::string metric = "val_loss";
  bool maximize = false;  // true: higher is better (an accuracy)
  int64_t patience = 3;
  double min_delta = 0;
  std::optional<int64_t> max_epochs_per_layer;
};

/// Head first, then the layers top-down over `total_epochs` (docs/API.md) — or one more at each
/// plateau of a metric (PlateauSchedule). Owns the state of every parameter from its
/// construction on; `step(e)` is idempotent and may jump (resume).
class GradualUnfreezer {
 public:
  GradualUnfreezer(torch::nn::Module& model, int64_t total_epochs,
                   std::optional<int64_t> unfreeze_embeddings_at = std::nullopt,
                   bool freeze_embeddings = true, bool verbose = true,
                   std::ostream& out = std::cout);
  GradualUnfreezer(torch::nn::Module& model, const PlateauSchedule& schedule,
                   bool freeze_embeddings = true, bool verbose = true,
                   std::ostream& out = std::cout);
  ~GradualUnfreezer();
  void step(int64_t epoch);
  /// A validation result of the PlateauSchedule's metric (Executor::report): a plateau opens the
  /// next layer at the next step(epoch). Call it after each validation.
  void report(const std::string& metric, double value);
  /// The executor behind it (attach an optimizer, checkpoint its state).
  Executor& executor();

 private:
  void start(torch::nn::Module& model, const std::string& preset, PlanOptions o);
  std::unique_ptr<Executor> executor_;
  torch::nn::Module* model_;
  bool verbose_;
  std::ostream* out_;
};

int64_t setup_lp_lora_style(torch::nn::Module& model, double freeze_ratio = 0.5,
                            bool freeze_embed = true);

struct MemorySavings {
  int64_t frozen_params = 0, trainable_params = 0;  // scalar parameters
  // Of frozen_params, those frozen by an executor's mask inside a tensor that trains in part
  // (experts of a fused tensor, rows): their gradient and optimizer state are not kept either,
  // once the executor has an optimizer attached (docs/ROWS.md); counted in the bytes saved.
  int64_t masked_frozen_params = 0;
  int64_t gradient_saved_bytes = 0, optimizer_saved_bytes = 0;
  double gradient_saved_gb = 0, optimizer_saved_gb = 0, total_saved_gb = 0;  // GB = 1e9 bytes
};
MemorySavings get_memory_savings_estimate(const torch::nn::Module& model,
                                          OptimizerKind optimizer = OptimizerKind::AdamW);

/// Modules that directly own parameters (a tied alias counts), in registration order; with
/// `include_params`, every canonical parameter name.
std::vector<std::string> get_layer_names(const torch::nn::Module& model,
                                         bool include_params = false);

struct TrainingTimeEstimate {
  int64_t steps_per_epoch = 0, total_steps = 0;
  double total_seconds = 0;
  std::string formatted;  // "1h 18m 7s"
};
TrainingTimeEstimate estimate_training_time(const torch::nn::Module& model, int64_t num_samples,
                                            int64_t batch_size, int64_t num_epochs,
                                            double ms_per_step = 500.0);

void print_model_summary(const torch::nn::Module& model, int max_depth = 3,
                         std::ostream& out = std::cout);
std::string model_summary(const torch::nn::Module& model, int max_depth = 3);

// TorchScript overloads.
int64_t freeze_model(torch::jit::Module& model);
int64_t freeze_first_n_layers(torch::jit::Module& model, int64_t n);
int64_t setup_lp_lora_style(torch::jit::Module& model, double freeze_ratio = 0.5,
                            bool freeze_embed = true);
int64_t unfreeze_model(torch::jit::Module& model);
int64_t get_trainable_params(const torch::jit::Module& model);
int64_t get_num_layers(const torch::jit::Module& model);
std::string layer_status(const torch::jit::Module& model, bool show_all = false);

}  // namespace layerfreeze
