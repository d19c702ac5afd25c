// SliceMasks: exact freezing of some slices (along the first dimension) of a tensor — the experts
// of a fused expert tensor, the rows a row selector cuts (docs/ROWS.md, "How it works"). A tensor
// frozen in part keeps requires_grad, so backward still makes its whole gradient; with an
// optimizer attached, the optimizer does not hold the tensor but a compact tensor of its
// trainable slices, with optimizer state for those slices only:
//   - before_step gathers the trainable slices' weights and gradient into the compact tensor and
//     drops the whole gradient (no gradient is kept across steps for a masked tensor);
//   - the optimizer steps the compact tensor — weight decay, momentum, moments and accumulators
//     are its own, for the trainable slices only, so the frozen slices cannot move;
//   - after_step scatters the compact tensor back into the model's tensor.
// When the slices change, the compact tensor is rebuilt in place in its param group, with the
// state of slices that stay trainable carried over and fresh state for slices that start
// training. A gradient hook zeroes the frozen slices' gradient, so it reads 0 to gradient
// clipping, logging and sync (and, without an optimizer attached, plain SGD stays exact; anything
// with state needs the optimizer attached). Only the torch adapter includes this.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace torch::optim {
class Optimizer;
}

namespace layerfreeze {

class SliceMasks {
 public:
  explicit SliceMasks(std::vector<at::Tensor>& tensors) : tensors_(&tensors) {}
  ~SliceMasks();
  SliceMasks(const SliceMasks&) = delete;
  SliceMasks& operator=(const SliceMasks&) = delete;

  /// Tensor i (trainable) has the slices `frozen` frozen (empty: none, it trains whole). With
  /// `optimizer`, the optimizer then holds i's compact tensor in i's place (or i itself when
  /// nothing is frozen), with the state of the slices that stay trainable. Throws
  /// DiagnosticError for an optimizer whose state it cannot cut.
  /// Returns whether a param group of `optimizer` holds what it holds for i now.
  bool set(uint32_t i, const std::vector<int32_t>& frozen, torch::optim::Optimizer* optimizer);
  /// Tensor i is frozen whole: its compact tensor leaves the optimizer, which holds i again —
  /// with the compact state spread back over i when `keep_state`, else none.
  void clear(uint32_t i, torch::optim::Optimizer* optimizer, bool keep_state);
  /// A new optimizer holds the model's tensors: every mask gets its compact tensor in it.
  void attach(torch::optim::Optimizer& optimizer);
  /// The optimizer is gone: the compact tensors are dropped (the model's tensors hold their
  /// values since the last after_step).
  void forget_optimizer();

  /// What an optimizer holds for tensor i: its compact tensor when it has one, else tensor i.
  const at::Tensor& held(uint32_t i) const;
  /// The executor's tensors with each compact tensor in its tensor's place.
  std::vector<at::Tensor> held_all() const;

  /// Gathers the trainable slices' weights and gradients into the compact tensors and drops the
  /// whole gradients; call after backward (and gradient sync), right before optimizer.step().
  void before_step();
  /// Writes the compact tensors back into the model's tensors; call right after optimizer.step().
  void after_step();
  /// Whether some tensor has a compact tensor (then before_step / after_step matter).
  bool compact() const;
  /// A backward pass reached a compact-held tensor since the last before_step.
  bool backward_pending() const;
  /// before_step ran and after_step has not.
  bool step_pending() const { return step_pending_; }
  /// Time was moved (seek, restore): what a step left pending no longer counts.
  void forget_pending();

  /// The frozen slices of tensor i now (empty when not masked).
  std::vector<int32_t> frozen_slices(uint32_t i) const;
  /// Tensor i's compact tensor; nullptr when it has none.
  const at::Tensor* compact_of(uint32_t i) const;

  /// The elements a live mask keeps frozen inside tensor `impl` (0: none), process-wide: the
  /// seed API reads it, since a masked tensor's requires_grad says "trainable".
  static int64_t frozen_numel_of(const void* impl);
  /// The slices a live mask keeps frozen inside tensor `impl` (empty: none).
  static std::vector<int32_t> frozen_slices_of(const void* impl);

 private:
  struct Hook {
    std::shared_ptr<bool> seen;  // the masks' seen_
    at::Tensor zero;             // bool [R, 1, ...] of the frozen slices; undefined: none
  };
  struct Mask {
    std::vector<int32_t> frozen, train;  // slices, ascending
    at::Tensor train_index;              // long [train.size()], on the tensor's device
    at::Tensor compact;                  // the optimizer's tensor; undefined without one
    std::shared_ptr<Hook> hook;
  };
  void make_compact(uint32_t i, Mask& m, torch::optim::Optimizer& optimizer);
  std::vector<at::Tensor>* tensors_;
  std::map<uint32_t, Mask> masks_;
  // A backward reached a tensor frozen in part since the last before_step (set by the hooks):
  // with an optimizer attached, a step is then due. One flag, so the per-step check is a read.
  std::shared_ptr<bool> seen_ = std::make_shared<bool>(false);
  bool attached_ = false;  // an optimizer is attached (compact tensors exist for the masks)
  bool step_pending_ = false;
};

}  // namespace layerfreeze
