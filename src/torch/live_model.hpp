// LiveModel: a live LibTorch module seen as an Inventory (names, shapes, dtypes, module types,
// tied aliases) plus the tensor behind each entry and the modules whose train/eval mode a policy
// may set. Both module APIs list a tied tensor once per name; entries are deduplicated by tensor
// identity.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "layerfreeze/inventory.hpp"

namespace torch::nn {
class Module;
}
namespace torch::jit {
struct Module;
}

namespace layerfreeze {

struct LiveModel {
  Inventory inventory;             // registration order
  std::vector<at::Tensor> tensors; // one per inventory entry
  /// A module whose mode can be set: the BatchNorm modules (for `batchnorm: eval_when_frozen`).
  struct ModeModule {
    std::string name;
    std::vector<uint32_t> params;  // its own parameters (inventory indices)
    std::function<void(bool)> set_training;
    std::function<bool()> is_training;
  };
  std::vector<ModeModule> batchnorms;
  /// Modules that directly own parameters, in registration order (get_layer_names).
  std::vector<std::string> owner_modules;
};

LiveModel live_model(torch::nn::Module& model);
LiveModel live_model(torch::jit::Module& model);

/// "torch::nn::LinearImpl" -> "Linear"; "__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear"
/// -> "Linear"; "GPT2Impl" -> "GPT2".
std::string short_type_name(const std::string& qualified);

}  // namespace layerfreeze
