// What differs between the LibTorch versions layerfreeze builds against — Debian's 1.13 and the
// 2.x of the official archives and the PyTorch wheel — in one place, chosen at compile time from
// LibTorch's own version macros (docs/COMPATIBILITY.md lists the versions tested).
//
// - Optimizer state: 1.13 keys `Optimizer::state()` by the text of the TensorImpl's address
//   (`c10::guts::to_string`); 2.x keys it by the address itself (`void*`).
// - `Optimizer::zero_grad()`: 1.13 zeroes the gradients in place and keeps them defined; 2.x
//   sets them to undefined by default (`set_to_none = true`). A tensor frozen behind the
//   executor's back therefore still moves under 1.13 (momentum, weight decay on a zero gradient)
//   but is skipped under 2.x — the executor drops the gradient itself, so both behave the same
//   with it.
// - `Optimizer::add_param_group`: 2.x merges a group's options with the defaults (below).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/optim/optimizer.h>
#include <torch/version.h>

#include <memory>
#include <vector>

#if TORCH_VERSION_MAJOR < 2
#include <c10/util/string_utils.h>
#endif

namespace layerfreeze::compat {

/// The LibTorch this file was compiled against, e.g. "2.13.0".
inline constexpr const char* kTorchVersion = TORCH_VERSION;

/// True when `Optimizer::zero_grad()` with no argument leaves gradients undefined (2.x).
inline constexpr bool kZeroGradSetsToNone = TORCH_VERSION_MAJOR >= 2;

#if TORCH_VERSION_MAJOR >= 2
using OptimizerStateKey = void*;
inline OptimizerStateKey state_key(const at::Tensor& t) { return t.unsafeGetTensorImpl(); }
#else
using OptimizerStateKey = std::string;
inline OptimizerStateKey state_key(const at::Tensor& t) {
  return c10::guts::to_string(t.unsafeGetTensorImpl());
}
#endif

/// Drops what `optimizer` keeps for `t` (momentum buffer, Adam moments); no-op when it has none.
inline void erase_optimizer_state(torch::optim::Optimizer& optimizer, const at::Tensor& t) {
  optimizer.state().erase(state_key(t));
}

/// Whether `optimizer` keeps state for `t`.
inline bool has_optimizer_state(const torch::optim::Optimizer& optimizer, const at::Tensor& t) {
  return optimizer.state().count(state_key(t)) != 0;
}

/// Adds a param group with exactly `options`. LibTorch 2.x's `add_param_group` merges the group's
/// options with the optimizer's defaults by comparing every field with a default-constructed
/// options object: a field equal to the library default (Adam's lr of 1e-3, say) is taken for
/// "not set" and replaced by the optimizer's value — an lr scaled down to exactly 1e-3 came back
/// as the optimizer's 1e-2. Setting the options again after adding the group keeps them as given,
/// in every version.
inline void add_param_group(torch::optim::Optimizer& optimizer, std::vector<at::Tensor> tensors,
                            std::unique_ptr<torch::optim::OptimizerOptions> options) {
  optimizer.add_param_group(
      torch::optim::OptimizerParamGroup(std::move(tensors), options->clone()));
  optimizer.param_groups().back().set_options(std::move(options));
}

/// `zero_grad` that zeroes gradients in place and keeps them defined, in every version.
inline void zero_grad_in_place(torch::optim::Optimizer& optimizer) {
#if TORCH_VERSION_MAJOR >= 2
  optimizer.zero_grad(/*set_to_none=*/false);
#else
  optimizer.zero_grad();
#endif
}

}  // namespace layerfreeze::compat
