// kept_bytes (include/layerfreeze/executor.hpp): the gradient and optimizer-state bytes a
// training step holds between steps, read from the tensors themselves.
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include <unordered_set>

#include "layerfreeze/executor.hpp"
#include "torch/compat.hpp"

namespace layerfreeze {

KeptBytes kept_bytes(const std::vector<torch::Tensor>& params,
                     const torch::optim::Optimizer& optimizer) {
  KeptBytes out;
  std::unordered_set<const void*> seen;
  auto grad = [&](const torch::Tensor& p) {
    if (seen.insert(p.unsafeGetTensorImpl()).second && p.grad().defined())
      out.gradients += static_cast<int64_t>(p.grad().nbytes());
  };
  for (const auto& p : params) grad(p);
  auto add = [&](const torch::Tensor& t) {
    if (t.defined() && t.dim() > 0) out.optimizer_state += static_cast<int64_t>(t.nbytes());
  };
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params()) {
      grad(p);
      auto it = optimizer.state().find(compat::state_key(p));
      if (it == optimizer.state().end()) continue;
      const auto* s = it->second.get();
      if (auto* x = dynamic_cast<const torch::optim::SGDParamState*>(s)) add(x->momentum_buffer());
      if (auto* x = dynamic_cast<const torch::optim::AdamParamState*>(s)) {
        add(x->exp_avg());
        add(x->exp_avg_sq());
        add(x->max_exp_avg_sq());
      }
      if (auto* x = dynamic_cast<const torch::optim::AdamWParamState*>(s)) {
        add(x->exp_avg());
        add(x->exp_avg_sq());
        add(x->max_exp_avg_sq());
      }
      if (auto* x = dynamic_cast<const torch::optim::RMSpropParamState*>(s)) {
        add(x->square_avg());
        add(x->momentum_buffer());
        add(x->grad_avg());
      }
      if (auto* x = dynamic_cast<const torch::optim::AdagradParamState*>(s)) add(x->sum());
    }
  return out;
}

}  // namespace layerfreeze
