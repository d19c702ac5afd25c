// ExpertMasks: exact freezing of some experts inside a fused expert tensor (docs/EXPERTS.md,
// "Masks"). A fused tensor frozen in part keeps requires_grad; its frozen slices (along the first
// dimension) do not move because
//   - a gradient hook zeroes their gradient slices on every backward pass;
//   - the optimizer state of those slices (momentum buffer, Adam moments, AMSGrad maximum,
//     RMSprop and Adagrad accumulators) is zeroed when they freeze, so a zero gradient makes a
//     zero update;
//   - the tensor sits in a param group with weight_decay 0, and the executor applies the decay it
//     took away to the trainable slices only (before_step): L2 decay (SGD, Adam, RMSprop,
//     Adagrad) into the gradient, decoupled decay (AdamW) into the weights.
// Nothing of a frozen slice is copied. Only the torch adapter includes this.
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

class ExpertMasks {
 public:
  explicit ExpertMasks(std::vector<at::Tensor>& tensors) : tensors_(&tensors) {}
  ~ExpertMasks();
  ExpertMasks(const ExpertMasks&) = delete;
  ExpertMasks& operator=(const ExpertMasks&) = delete;

  /// Tensor i (trainable) has `frozen_experts` frozen (empty: none). Installs the gradient hook
  /// the first time, zeroes the frozen slices of its gradient and of `optimizer`'s state.
  void set(uint32_t i, const std::vector<int32_t>& frozen_experts,
           torch::optim::Optimizer* optimizer);
  /// Tensor i is frozen whole (its mask no longer matters).
  void clear(uint32_t i);

  /// Puts every masked tensor `optimizer` holds into a param group of its own kind with
  /// weight_decay 0 and remembers the decay to apply (call after groups change). Throws
  /// DiagnosticError for an optimizer whose weight decay it cannot take over.
  void take_decay(torch::optim::Optimizer& optimizer);
  /// Applies the decay taken over to the trainable slices; call right before optimizer.step().
  void before_step(torch::optim::Optimizer& optimizer);
  /// Whether a masked tensor's decay is the executor's to apply (before_step is then required).
  bool owns_decay() const;
  void forget_optimizer() { decay_.clear(); }
  /// Tensor i now sits in param group `group` (the executor moved it to its promised rate).
  void moved(uint32_t i, size_t group) {
    auto it = decay_.find(i);
    if (it != decay_.end()) it->second.group = group;
  }

  /// The frozen experts of tensor i now (empty when not masked).
  std::vector<int32_t> frozen_experts(uint32_t i) const;

  /// The elements a live mask keeps frozen inside tensor `impl` (0: none), process-wide: the
  /// seed API reads it, since a masked tensor's requires_grad says "trainable".
  static int64_t frozen_numel_of(const void* impl);
  /// The experts a live mask keeps frozen inside tensor `impl` (empty: none).
  static std::vector<int32_t> frozen_experts_of(const void* impl);

 private:
  struct Mask {
    std::shared_ptr<at::Tensor> frozen;  // bool, [E, 1, ...]; undefined: nothing frozen
    std::vector<int32_t> experts;
    bool hooked = false;
  };
  struct Decay {
    double weight_decay = 0;
    bool decoupled = false;  // AdamW: p *= 1 - lr * wd; else grad += wd * p
    size_t group = 0;        // the group holding the tensor
  };
  std::vector<at::Tensor>* tensors_;
  std::map<uint32_t, Mask> masks_;
  std::map<uint32_t, Decay> decay_;  // tensors whose decay the executor applies
};

}  // namespace layerfreeze
