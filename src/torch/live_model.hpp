// LiveModel: a live LibTorch module seen as an Inventory (names, shapes, dtypes, module types,
// tied aliases) plus the tensor behind each entry and the modules whose train/eval mode a policy
// may set. Both module APIs list a tied tensor once per name; entries are deduplicated by tensor
// identity.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "core/replay.hpp"
#include "layerfreeze/inventory.hpp"

namespace torch::nn {
class Module;
}
namespace torch::jit {
struct Module;
}

namespace layerfreeze {

struct LiveModel {
  ModelFacts facts;                 // registration order; no structure (discovery's to find)
  std::vector<at::Tensor> tensors;  // one per tensor of the facts, in their order
  /// A module whose mode can be set: the BatchNorm modules (for `batchnorm: eval_when_frozen`).
  struct ModeModule {
    std::string name;
    std::vector<uint32_t> params;  // its own parameters (indices into tensors)
    std::function<void(bool)> set_training;
    std::function<bool()> is_training;
  };
  std::vector<ModeModule> batchnorms;
  /// Every submodule (the root excluded), parameter-less ones included, in registration order:
  /// what `frozen_prefix: eval` may put in eval mode, and where dropout hides from an inventory.
  struct Submodule {
    std::string name;  // "transformer.h.3.attn.drop"
    std::string type;  // "Dropout"
    double p = -1;     // a dropout's probability; -1: not a dropout, or not readable
    std::function<void(bool)> set_training;
    std::function<bool()> is_training;
  };
  std::vector<Submodule> modules;
  /// Modules that directly own parameters, in registration order (get_layer_names).
  std::vector<std::string> owner_modules;
};

/// The sink that touches tensors: freezing sets requires_grad=false and drops the gradient
/// (LibTorch 1.13's zero_grad keeps it defined, and momentum, Adam moments and weight decay then
/// keep moving a "frozen" weight); unfreezing sets requires_grad=true. Every call of a change
/// point is remembered, so abort() puts the tensors back as they were when LibTorch refuses one.
/// The executor adds the optimizer and module modes on top (its changed()); the seed API uses it
/// as it is.
class TensorSink : public StateSink {
 public:
  explicit TensorSink(std::vector<at::Tensor>& tensors) : tensors_(&tensors) {}
  void freeze(uint32_t i) override { set(i, true); }
  void unfreeze(uint32_t i) override { set(i, false); }
  void freeze_all(const std::vector<uint32_t>& indices) override {
    for (uint32_t i : indices) set(i, true);
  }
  void unfreeze_all(const std::vector<uint32_t>& indices) override {
    for (uint32_t i : indices) set(i, false);
  }
  void changed(const Time& at, const Bitset& frozen) override;
  void abort() override;

 protected:
  /// What the change point being applied touched, in call order.
  const std::vector<uint32_t>& frozen_now() const { return frozen_now_; }
  const std::vector<uint32_t>& unfrozen_now() const { return unfrozen_now_; }
  std::vector<at::Tensor>& tensors() { return *tensors_; }

 private:
  struct Undo {
    uint32_t index;
    bool requires_grad;
    bool took_grad;  // frozen here: `grad` is the gradient it had
    at::Tensor grad;
  };
  void set(uint32_t i, bool frozen);
  std::vector<at::Tensor>* tensors_;
  std::vector<Undo> undo_;
  std::vector<uint32_t> frozen_now_, unfrozen_now_;
};

LiveModel live_model(torch::nn::Module& model);
LiveModel live_model(torch::jit::Module& model);

/// "torch::nn::LinearImpl" -> "Linear";
/// "__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear"
/// -> "Linear"; "GPT2Impl" -> "GPT2".
std::string short_type_name(const std::string& qualified);

}  // namespace layerfreeze
