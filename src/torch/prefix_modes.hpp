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
  void bind(const std::vector<LiveModel::Submodule>& modules, const Inventory& inventory);
  /// The state changed to `state`: recomputes the boundary and, when `hold_eval`, puts the
  /// prefix's modules in eval mode and gives those that left it the root's mode.
  void update(const CompiledPlan& plan, const Selection& state, bool hold_eval,
              const std::function<bool()>& root_training);
  /// Re-puts the prefix's modules in eval mode after a `model->train()` (under hold_eval).
  void enforce();
  /// The prefix now, with what makes it vary in train mode read from the live modes.
  CacheablePrefix describe() const;

 private:
  enum Place : uint8_t { kAfter, kPrefix, kUnknown };
  const std::vector<LiveModel::Submodule>* modules_ = nullptr;
  const Inventory* inventory_ = nullptr;
  std::vector<std::vector<int32_t>> ancestors_;  // per parameter: the modules holding it
  std::vector<int32_t> parent_;                  // per module: nearest ancestor module, -1: root
  std::vector<uint8_t> holds_params_;            // per module: holds any parameter
  std::vector<Place> place_;                     // per module
  std::vector<int32_t> held_eval_;               // modules put in eval mode (prefix roots)
  int32_t layers_ = -1;
  std::string stops_;
  bool hold_eval_ = false;
};

}  // namespace layerfreeze
