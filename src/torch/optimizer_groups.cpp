#include "torch/optimizer_groups.hpp"

#include <torch/optim/adagrad.h>
#include <torch/optim/optimizer.h>

#include <map>
#include <memory>
#include <unordered_map>
#include <utility>

#include "torch/compat.hpp"

namespace layerfreeze {

void add_group_keeping_state(torch::optim::Optimizer& optimizer, std::vector<at::Tensor> tensors,
                             const torch::optim::OptimizerOptions& options) {
  // LibTorch's add_param_group takes a tensor with state for one held twice and refuses it:
  // the state steps aside while the group is added, then comes back under the same key.
  auto& state = optimizer.state();
  std::vector<
      std::pair<compat::OptimizerStateKey, std::unique_ptr<torch::optim::OptimizerParamState>>>
      kept;
  for (const auto& t : tensors) {
    auto it = state.find(compat::state_key(t));
    if (it == state.end()) continue;
    kept.emplace_back(it->first, std::move(it->second));
    state.erase(it);
  }
  compat::add_param_group(optimizer, std::move(tensors), options.clone());
  for (auto& [key, value] : kept) state[key] = std::move(value);
}

bool needs_eager_state(const torch::optim::Optimizer& optimizer) {
  return dynamic_cast<const torch::optim::Adagrad*>(&optimizer) != nullptr;
}

void ensure_eager_state(torch::optim::Optimizer& optimizer,
                        const std::vector<at::Tensor>& tensors) {
  auto* adagrad = dynamic_cast<torch::optim::Adagrad*>(&optimizer);
  if (!adagrad || tensors.empty()) return;
  std::unordered_map<const void*, const torch::optim::AdagradOptions*> options_of;
  for (const auto& group : optimizer.param_groups())
    for (const auto& t : group.params())
      options_of[t.unsafeGetTensorImpl()] =
          static_cast<const torch::optim::AdagradOptions*>(&group.options());
  auto& state = optimizer.state();
  for (const auto& t : tensors) {
    auto o = options_of.find(t.unsafeGetTensorImpl());
    if (o == options_of.end() || state.count(compat::state_key(t))) continue;
    // What Adagrad's constructor gives every tensor: no step yet, the accumulator at its
    // initial value.
    auto s = std::make_unique<torch::optim::AdagradParamState>();
    s->step(0);
    s->sum(at::full_like(t, o->second->initial_accumulator_value(), at::MemoryFormat::Preserve));
    state[compat::state_key(t)] = std::move(s);
  }
}

GroupChanges reconcile_groups(torch::optim::Optimizer& optimizer,
                              const std::vector<at::Tensor>& tensors,
                              const std::vector<GroupWant>& want) {
  GroupChanges changes;
  if (want.empty()) return changes;
  auto& groups = optimizer.param_groups();
  std::unordered_map<const void*, size_t> group_of;  // a held tensor's group
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& t : groups[g].params()) group_of.emplace(t.unsafeGetTensorImpl(), g);
  // New groups by (rate, the group a moved tensor leaves — its options are kept; none for an
  // added tensor, which takes the optimizer's defaults).
  std::map<std::pair<double, size_t>, std::vector<uint32_t>> joining;
  constexpr size_t kDefaults = static_cast<size_t>(-1);
  for (const GroupWant& w : want) {
    const at::Tensor& t = tensors[w.index];
    auto held = group_of.find(t.unsafeGetTensorImpl());
    if (held == group_of.end()) {
      joining[{w.promised.value_or(w.when_added), kDefaults}].push_back(w.index);
      ++changes.added;
    } else if (w.promised && groups[held->second].options().get_lr() != *w.promised) {
      joining[{*w.promised, held->second}].push_back(w.index);
      ++changes.moved;
    }
  }
  if (joining.empty()) return changes;
  // Moved tensors leave their groups first (an emptied group stays: the indices of the other
  // groups do not shift).
  for (const auto& [key, members] : joining) {
    if (key.second == kDefaults) continue;
    auto& params = groups[key.second].params();
    for (uint32_t i : members) {
      const void* impl = tensors[i].unsafeGetTensorImpl();
      for (auto it = params.begin(); it != params.end(); ++it)
        if (it->unsafeGetTensorImpl() == impl) {
          params.erase(it);
          break;
        }
    }
  }
  std::vector<at::Tensor> joined;
  for (const auto& [key, members] : joining) {
    auto options = key.second == kDefaults ? optimizer.defaults().clone()
                                           : groups[key.second].options().clone();
    options->set_lr(key.first);
    std::vector<at::Tensor> group;
    for (uint32_t i : members) group.push_back(tensors[i]);
    joined.insert(joined.end(), group.begin(), group.end());
    add_group_keeping_state(optimizer, std::move(group), *options);
  }
  ensure_eager_state(optimizer, joined);
  return changes;
}

}  // namespace layerfreeze
