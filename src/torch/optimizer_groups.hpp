// OptimizerGroups: keeps an attached optimizer holding what the plan trains, at the learning
// rates the plan promises (docs/API.md, "The executor"). A trainable tensor the optimizer does not
// hold joins a new param group; a held tensor whose group's learning rate is not the one a stage
// promised for it moves to a group at that rate — at attach_optimizer and at every change point,
// so a stage that fires at epoch 0, an optimizer attached late, or one built from
// `model->parameters()` all end with the groups `plan` prints. Moving keeps the tensor's
// optimizer state; optimizers that create state eagerly (Adagrad) get it for what joins.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace torch::optim {
class Optimizer;
class OptimizerOptions;
}  // namespace torch::optim

namespace layerfreeze {

/// One trainable tensor and the learning rate it should train at.
struct GroupWant {
  uint32_t index = 0;  // into the executor's tensors
  /// The rate a stage promised (its `lr`, `lr_scale`, the plan's `unfreeze_lr_scale` and
  /// `lr_decay`); nullopt: no promise, any group will do.
  std::optional<double> promised;
  double when_added = 0;  // the rate of a new group when the optimizer does not hold it
};

/// What reconcile did, for tests and messages.
struct GroupChanges {
  size_t added = 0;  // tensors that joined a new group
  size_t moved = 0;  // tensors moved to a group at their promised rate
};

/// Makes `optimizer` hold every tensor of `want` at its rate: new groups are one per rate, with
/// the optimizer's defaults (a moved tensor: its old group's options) and that rate. `tensors`
/// are what the optimizer holds for each index: a tensor frozen in part is its compact tensor
/// (torch/slice_masks.hpp).
GroupChanges reconcile_groups(torch::optim::Optimizer& optimizer,
                              const std::vector<at::Tensor>& tensors,
                              const std::vector<GroupWant>& want);

/// Adds a param group holding `tensors` with exactly `options`, keeping optimizer state the
/// tensors already have (LibTorch's add_param_group refuses a tensor with state).
void add_group_keeping_state(torch::optim::Optimizer& optimizer, std::vector<at::Tensor> tensors,
                             const torch::optim::OptimizerOptions& options);

/// Whether `optimizer` creates state for every tensor it holds up front (Adagrad).
bool needs_eager_state(const torch::optim::Optimizer& optimizer);

/// Gives every tensor of `tensors` the state an optimizer that creates it eagerly (Adagrad's
/// accumulator) expects, when it has none: a tensor that joined later, or whose state was
/// dropped while it was frozen. Nothing for other optimizers.
void ensure_eager_state(torch::optim::Optimizer& optimizer, const std::vector<at::Tensor>& tensors);

}  // namespace layerfreeze
