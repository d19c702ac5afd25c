// PrefixModes: the live side of the cacheable frozen prefix (docs/CACHE.md). The plan knows the
// prefix by its parameters (analysis/cache_boundary.hpp); a live module also has modules without
// parameters — dropout above all — that decide whether the prefix computes the same output for a
// sample every time. PrefixModes places every submodule relative to the boundary (inside the
// prefix, after it, or unknown: a parameter-less module under a parent that holds both), holds the
// prefix's modules in eval mode under `frozen_prefix: eval`, and says what still makes the
// prefix's output vary in train mode.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/plan.hpp"
#include "layerfreeze/executor.hpp"
#include "torch/live_model.hpp"

namespace layerfreeze {

class PrefixModes {
 public:
  /// `modules` and the inventory's names (the live tensors' order) stay alive and unchanged.
  /// Nothing is computed until the policy or a describe() needs it: an executor without either
  /// pays nothing at construction or at a change point.
  void bind(const std::vector<LiveModel::Submodule>& modules, const Inventory& inventory);
  /// The state changed to `state`. When `hold_eval`, recomputes the boundary, puts the prefix's
  /// modules in eval mode and gives those that left it the root's mode.
  void update(const CompiledPlan& plan, const Selection& state, bool hold_eval,
              const std::function<bool()>& root_training);
  /// Re-puts the prefix's modules in eval mode after a `model->train()` (under hold_eval).
  void enforce();
  /// The prefix of `state` (the executor's now), with what makes it vary in train mode read from
  /// the live modes.
  CacheablePrefix describe(const CompiledPlan& plan, const Selection& state) const;

 private:
  enum Place : uint8_t { kAfter, kPrefix, kUnknown };
  void index() const;  // the module tree: parents, which modules hold which parameters
  void place(const CompiledPlan& plan, const Selection& state) const;
  const std::vector<LiveModel::Submodule>* modules_ = nullptr;
  const Inventory* inventory_ = nullptr;
  // Computed on demand (describe() is const): the tree once, the places once per change point.
  mutable bool indexed_ = false;
  mutable std::vector<std::vector<int32_t>> ancestors_;  // per parameter: the modules holding it
  mutable std::vector<int32_t> parent_;        // per module: nearest ancestor module, -1: root
  mutable std::vector<uint8_t> holds_params_;  // per module: holds any parameter
  mutable std::vector<Place> place_;           // per module
  mutable int32_t layers_ = -1;
  mutable std::string stops_;
  mutable std::vector<size_t> prefix_params_;  // the prefix's parameters (inventory indices)
  mutable uint64_t placed_version_ = UINT64_MAX;
  uint64_t version_ = 0;            // change points seen
  std::vector<int32_t> held_eval_;  // modules put in eval mode (prefix roots)
  bool hold_eval_ = false;
};

}  // namespace layerfreeze
