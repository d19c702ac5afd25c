#include "torch/expert_masks.hpp"

#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include <map>
#include <mutex>
#include <unordered_map>

#include "layerfreeze/diagnostics.hpp"
#include "torch/compat.hpp"
#include "torch/optimizer_groups.hpp"

namespace layerfreeze {

namespace {

// The bool mask [E, 1, ...] of `experts` for tensor `t`.
at::Tensor mask_of(const at::Tensor& t, const std::vector<int32_t>& experts) {
  std::vector<int64_t> shape(static_cast<size_t>(t.dim()), 1);
  shape[0] = t.size(0);
  at::Tensor m = at::zeros(shape, t.options().dtype(at::kBool));
  auto idx = at::tensor(std::vector<int64_t>(experts.begin(), experts.end()),
                        at::TensorOptions().dtype(at::kLong))
                 .to(t.device());
  return m.index_fill_(0, idx, true);
}

void zero_slices(at::Tensor& t, const at::Tensor& mask) {
  if (t.defined() && t.dim() == mask.dim() && t.size(0) == mask.size(0)) t.masked_fill_(mask, 0);
}

// Zeroes the frozen slices of every state tensor the optimizer keeps for `p`.
void zero_state(torch::optim::Optimizer& opt, const at::Tensor& p, const at::Tensor& mask) {
  auto it = opt.state().find(compat::state_key(p));
  if (it == opt.state().end()) return;
  auto* s = it->second.get();
  if (auto* x = dynamic_cast<torch::optim::SGDParamState*>(s)) {
    zero_slices(x->momentum_buffer(), mask);
  } else if (auto* x = dynamic_cast<torch::optim::AdamParamState*>(s)) {
    zero_slices(x->exp_avg(), mask);
    zero_slices(x->exp_avg_sq(), mask);
    zero_slices(x->max_exp_avg_sq(), mask);
  } else if (auto* x = dynamic_cast<torch::optim::AdamWParamState*>(s)) {
    zero_slices(x->exp_avg(), mask);
    zero_slices(x->exp_avg_sq(), mask);
    zero_slices(x->max_exp_avg_sq(), mask);
  } else if (auto* x = dynamic_cast<torch::optim::RMSpropParamState*>(s)) {
    zero_slices(x->square_avg(), mask);
    zero_slices(x->momentum_buffer(), mask);
    zero_slices(x->grad_avg(), mask);
  } else if (auto* x = dynamic_cast<torch::optim::AdagradParamState*>(s)) {
    zero_slices(x->sum(), mask);
  } else {
    Diagnostics d;
    d.error("optimizer-unsupported",
            "a fused expert tensor is frozen in part, but the optimizer keeps a state this "
            "executor does not know how to cut",
            {}, {"masks support SGD, Adam, AdamW, RMSprop and Adagrad"});
    throw DiagnosticError(std::move(d));
  }
}

// The weight decay of a group's options, and whether it is decoupled; nullopt: unknown kind.
std::optional<std::pair<double, bool>> decay_of(torch::optim::OptimizerOptions& o) {
  if (auto* x = dynamic_cast<torch::optim::AdamWOptions*>(&o)) return {{x->weight_decay(), true}};
  if (auto* x = dynamic_cast<torch::optim::AdamOptions*>(&o)) return {{x->weight_decay(), false}};
  if (auto* x = dynamic_cast<torch::optim::SGDOptions*>(&o)) return {{x->weight_decay(), false}};
  if (auto* x = dynamic_cast<torch::optim::RMSpropOptions*>(&o))
    return {{x->weight_decay(), false}};
  if (auto* x = dynamic_cast<torch::optim::AdagradOptions*>(&o))
    return {{x->weight_decay(), false}};
  return std::nullopt;
}

void set_decay(torch::optim::OptimizerOptions& o, double wd) {
  if (auto* x = dynamic_cast<torch::optim::AdamWOptions*>(&o)) x->weight_decay(wd);
  if (auto* x = dynamic_cast<torch::optim::AdamOptions*>(&o)) x->weight_decay(wd);
  if (auto* x = dynamic_cast<torch::optim::SGDOptions*>(&o)) x->weight_decay(wd);
  if (auto* x = dynamic_cast<torch::optim::RMSpropOptions*>(&o)) x->weight_decay(wd);
  if (auto* x = dynamic_cast<torch::optim::AdagradOptions*>(&o)) x->weight_decay(wd);
}

// Every live mask, by tensor (TensorImpl*): its frozen experts and the elements of one expert.
// The seed API's counts and layer table read it.
struct Published {
  std::vector<int32_t> experts;
  int64_t per_expert = 0;
};
std::mutex registry_mu;
std::unordered_map<const void*, Published>& registry() {
  static std::unordered_map<const void*, Published> r;
  return r;
}

void publish(const at::Tensor& t, const std::vector<int32_t>& frozen_experts) {
  std::lock_guard<std::mutex> lock(registry_mu);
  if (frozen_experts.empty() || !t.defined() || t.dim() == 0 || t.size(0) == 0)
    registry().erase(t.unsafeGetTensorImpl());
  else
    registry()[t.unsafeGetTensorImpl()] = {frozen_experts, t.numel() / t.size(0)};
}

}  // namespace

ExpertMasks::~ExpertMasks() {
  for (const auto& [i, m] : masks_)
    if (!m.experts.empty()) publish((*tensors_)[i], {});
}

int64_t ExpertMasks::frozen_numel_of(const void* impl) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry().find(impl);
  return it == registry().end()
             ? 0
             : static_cast<int64_t>(it->second.experts.size()) * it->second.per_expert;
}

std::vector<int32_t> ExpertMasks::frozen_experts_of(const void* impl) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry().find(impl);
  return it == registry().end() ? std::vector<int32_t>{} : it->second.experts;
}

void ExpertMasks::set(uint32_t i, const std::vector<int32_t>& frozen_experts,
                      torch::optim::Optimizer* optimizer) {
  at::Tensor& t = (*tensors_)[i];
  Mask& m = masks_[i];
  if (!m.frozen) m.frozen = std::make_shared<at::Tensor>();
  m.experts = frozen_experts;
  publish(t, frozen_experts);
  if (frozen_experts.empty()) {
    *m.frozen = at::Tensor();
    return;
  }
  at::NoGradGuard no_grad;
  *m.frozen = mask_of(t, frozen_experts);
  if (!m.hooked && t.requires_grad()) {
    std::shared_ptr<at::Tensor> frozen = m.frozen;
    t.register_hook([frozen](const at::Tensor& g) -> at::Tensor {
      // masked_fill, not a product: a NaN or Inf gradient slice must not reach a frozen expert.
      return frozen->defined() ? g.masked_fill(*frozen, 0) : g;
    });
    m.hooked = true;
  }
  if (t.grad().defined()) t.mutable_grad().masked_fill_(*m.frozen, 0);
  if (optimizer) zero_state(*optimizer, t, *m.frozen);
}

void ExpertMasks::clear(uint32_t i) {
  auto it = masks_.find(i);
  if (it == masks_.end()) return;
  publish((*tensors_)[i], {});
  it->second.experts.clear();
  if (it->second.frozen) *it->second.frozen = at::Tensor();
}

std::vector<int32_t> ExpertMasks::frozen_experts(uint32_t i) const {
  auto it = masks_.find(i);
  return it == masks_.end() ? std::vector<int32_t>{} : it->second.experts;
}

bool ExpertMasks::owns_decay() const {
  for (const auto& [i, d] : decay_)
    if (d.weight_decay != 0) return true;
  return false;
}

void ExpertMasks::take_decay(torch::optim::Optimizer& optimizer) {
  auto& groups = optimizer.param_groups();
  std::map<size_t, size_t> twin;  // a group -> its no-decay twin, made here
  for (const auto& [i, m] : masks_) {
    if (m.experts.empty() || decay_.count(i)) continue;
    const at::Tensor& t = (*tensors_)[i];
    for (size_t g = 0; g < groups.size(); ++g) {
      auto& params = groups[g].params();
      auto at = std::find_if(params.begin(), params.end(), [&](const at::Tensor& q) {
        return q.unsafeGetTensorImpl() == t.unsafeGetTensorImpl();
      });
      if (at == params.end()) continue;
      auto kind = decay_of(groups[g].options());
      if (!kind) {
        Diagnostics d;
        d.error("optimizer-unsupported",
                "a fused expert tensor is frozen in part, but this optimizer's weight decay "
                "cannot be taken over for its trainable experts only",
                {}, {"masks support SGD, Adam, AdamW, RMSprop and Adagrad"});
        throw DiagnosticError(std::move(d));
      }
      if (kind->first == 0) {
        decay_[i] = {0, kind->second, g};
        break;
      }
      params.erase(at);
      auto it = twin.find(g);
      if (it == twin.end()) {
        auto options = groups[g].options().clone();
        set_decay(*options, 0);
        add_group_keeping_state(optimizer, {t}, *options);
        it = twin.emplace(g, groups.size() - 1).first;
      } else {
        groups[it->second].params().push_back(t);
      }
      decay_[i] = {kind->first, kind->second, it->second};
      break;
    }
  }
}

void ExpertMasks::before_step(torch::optim::Optimizer& optimizer) {
  at::NoGradGuard no_grad;
  auto& groups = optimizer.param_groups();
  for (const auto& [i, d] : decay_) {
    if (d.weight_decay == 0 || d.group >= groups.size()) continue;
    at::Tensor& t = (*tensors_)[i];
    if (!t.requires_grad() || !t.grad().defined()) continue;  // the optimizer skips it too
    const auto& m = masks_[i];
    const bool masked = m.frozen && m.frozen->defined();
    if (d.decoupled) {
      const double lr = groups[d.group].options().get_lr();
      const double factor = 1.0 - lr * d.weight_decay;
      if (!masked) {
        t.mul_(factor);
      } else {
        // Exactly 1 on the frozen slices: their bits do not change.
        at::Tensor f = at::full_like(*m.frozen, factor, t.options()).masked_fill_(*m.frozen, 1.0);
        t.mul_(f);
      }
    } else {
      at::Tensor& g = t.mutable_grad();
      if (!masked)
        g.add_(t, d.weight_decay);
      else
        g.add_(t.masked_fill(*m.frozen, 0), d.weight_decay);
    }
  }
}

}  // namespace layerfreeze
