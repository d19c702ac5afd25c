#include "torch/slice_masks.hpp"

#include <ATen/ATen.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include <mutex>
#include <unordered_map>

#include "layerfreeze/diagnostics.hpp"
#include "torch/compat.hpp"
#include "torch/optimizer_groups.hpp"

namespace layerfreeze {

namespace {

// The bool mask [R, 1, ...] of `slices` for tensor `t`.
at::Tensor mask_of(const at::Tensor& t, const std::vector<int32_t>& slices) {
  std::vector<int64_t> shape(static_cast<size_t>(t.dim()), 1);
  shape[0] = t.size(0);
  at::Tensor m = at::zeros(shape, t.options().dtype(at::kBool));
  auto idx = at::tensor(std::vector<int64_t>(slices.begin(), slices.end()),
                        at::TensorOptions().dtype(at::kLong))
                 .to(t.device());
  return m.index_fill_(0, idx, true);
}

std::vector<int32_t> all_slices(int64_t n) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) out[static_cast<size_t>(k)] = static_cast<int32_t>(k);
  return out;
}

// Which rows of a state cut for `from` slices land where in one cut for `to` slices (both
// ascending): rows of slices in both are copied, the others start at the state's initial value.
struct Remap {
  int64_t from_count = 0, to_count = 0;
  at::Tensor src, dst;  // long, CPU
  Remap(const std::vector<int32_t>& from, const std::vector<int32_t>& to)
      : from_count(static_cast<int64_t>(from.size())), to_count(static_cast<int64_t>(to.size())) {
    std::vector<int64_t> s, d;
    for (size_t a = 0, b = 0; a < from.size() && b < to.size();) {
      if (from[a] < to[b]) {
        ++a;
      } else if (to[b] < from[a]) {
        ++b;
      } else {
        s.push_back(static_cast<int64_t>(a++));
        d.push_back(static_cast<int64_t>(b++));
      }
    }
    src = at::tensor(s, at::TensorOptions().dtype(at::kLong));
    dst = at::tensor(d, at::TensorOptions().dtype(at::kLong));
  }
  // `x` (a state tensor of the `from` cut) for the `to` cut; a tensor not cut by slices (a step
  // count) is kept.
  at::Tensor operator()(const at::Tensor& x, double fill = 0) const {
    if (!x.defined() || x.dim() == 0 || x.size(0) != from_count) return x;
    auto sizes = x.sizes().vec();
    sizes[0] = to_count;
    at::Tensor y = at::full(sizes, fill, x.options());
    if (src.numel() > 0)
      y.index_copy_(0, dst.to(x.device()), x.index_select(0, src.to(x.device())));
    return y;
  }
};

[[noreturn]] void unsupported() {
  Diagnostics d;
  d.error("optimizer-unsupported",
          "a tensor is frozen in part (some experts or rows), but the optimizer keeps a state this "
          "executor does not know how to cut",
          {}, {"masks support SGD, Adam, AdamW, RMSprop and Adagrad"});
  throw DiagnosticError(std::move(d));
}

// The options of the param group holding `t`; nullptr when none does.
const torch::optim::OptimizerOptions* options_of(torch::optim::Optimizer& opt,
                                                 const at::Tensor& t) {
  for (const auto& g : opt.param_groups())
    for (const auto& p : g.params())
      if (p.unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) return &g.options();
  return nullptr;
}

// Adam's and AdamW's states have the same fields.
template <class State>
void remap_adam(State& x, const Remap& r) {
  x.exp_avg(r(x.exp_avg()));
  x.exp_avg_sq(r(x.exp_avg_sq()));
  x.max_exp_avg_sq(r(x.max_exp_avg_sq()));
}

// Moves the state `opt` keeps for `from` to `to`, cut by `r`.
void move_state(torch::optim::Optimizer& opt, const at::Tensor& from, const at::Tensor& to,
                const Remap& r) {
  auto& state = opt.state();
  auto it = state.find(compat::state_key(from));
  if (it == state.end()) return;
  auto s = it->second->clone();
  if (auto* x = dynamic_cast<torch::optim::SGDParamState*>(s.get())) {
    x->momentum_buffer(r(x->momentum_buffer()));
  } else if (auto* x = dynamic_cast<torch::optim::AdamParamState*>(s.get())) {
    remap_adam(*x, r);
  } else if (auto* x = dynamic_cast<torch::optim::AdamWParamState*>(s.get())) {
    remap_adam(*x, r);
  } else if (auto* x = dynamic_cast<torch::optim::RMSpropParamState*>(s.get())) {
    x->square_avg(r(x->square_avg()));
    x->momentum_buffer(r(x->momentum_buffer()));
    x->grad_avg(r(x->grad_avg()));
  } else if (auto* x = dynamic_cast<torch::optim::AdagradParamState*>(s.get())) {
    // A slice that starts training starts where Adagrad starts every tensor.
    const torch::optim::OptimizerOptions* held_by = options_of(opt, to);
    const auto* o =
        dynamic_cast<const torch::optim::AdagradOptions*>(held_by ? held_by : &opt.defaults());
    const double init = o ? o->initial_accumulator_value() : 0.0;
    x->sum(r(x->sum(), init));
  } else {
    unsupported();
  }
  state.erase(it);
  state[compat::state_key(to)] = std::move(s);
}

// Puts `to` where `from` is in the optimizer's param groups; false when no group holds `from`.
bool replace(torch::optim::Optimizer& opt, const at::Tensor& from, const at::Tensor& to) {
  for (auto& g : opt.param_groups())
    for (auto& p : g.params())
      if (p.unsafeGetTensorImpl() == from.unsafeGetTensorImpl()) {
        p = to;
        return true;
      }
  return false;
}

// Every live mask, by tensor (TensorImpl*): its frozen slices and the elements of one slice.
// The seed API's counts and layer table read it.
struct Published {
  std::vector<int32_t> slices;
  int64_t per_slice = 0;
};
std::mutex registry_mu;
std::unordered_map<const void*, Published>& registry() {
  static std::unordered_map<const void*, Published> r;
  return r;
}

void publish(const at::Tensor& t, const std::vector<int32_t>& frozen) {
  std::lock_guard<std::mutex> lock(registry_mu);
  if (frozen.empty() || !t.defined() || t.dim() == 0 || t.size(0) == 0)
    registry().erase(t.unsafeGetTensorImpl());
  else
    registry()[t.unsafeGetTensorImpl()] = {frozen, t.numel() / t.size(0)};
}

}  // namespace

SliceMasks::~SliceMasks() {
  for (const auto& [i, m] : masks_) {
    if (!m.frozen.empty()) publish((*tensors_)[i], {});
    if (m.hook) m.hook->zero = at::Tensor();  // the hook outlives us on the tensor
  }
}

int64_t SliceMasks::frozen_numel_of(const void* impl) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry().find(impl);
  return it == registry().end()
             ? 0
             : static_cast<int64_t>(it->second.slices.size()) * it->second.per_slice;
}

std::vector<int32_t> SliceMasks::frozen_slices_of(const void* impl) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry().find(impl);
  return it == registry().end() ? std::vector<int32_t>{} : it->second.slices;
}

bool SliceMasks::set(uint32_t i, const std::vector<int32_t>& frozen,
                     torch::optim::Optimizer* optimizer) {
  at::Tensor& t = (*tensors_)[i];
  if (!t.defined() || t.dim() == 0) return false;
  Mask& m = masks_[i];
  const int64_t R = t.size(0);
  const bool had_compact = m.compact.defined();
  const std::vector<int32_t> old_train = had_compact ? m.train : all_slices(R);
  const at::Tensor old = had_compact ? m.compact : t;
  m.frozen = frozen;
  m.train.clear();
  for (int32_t r = 0, k = 0; r < R; ++r) {
    if (k < static_cast<int32_t>(frozen.size()) && frozen[static_cast<size_t>(k)] == r)
      ++k;
    else
      m.train.push_back(r);
  }
  publish(t, frozen);
  if (!m.hook) {
    m.hook = std::make_shared<Hook>();
    m.hook->seen = seen_;
    if (t.requires_grad()) {
      std::shared_ptr<Hook> h = m.hook;
      t.register_hook([h](const at::Tensor& g) -> at::Tensor {
        if (!h->zero.defined()) return at::Tensor();  // not frozen in part: unchanged
        *h->seen = true;
        // masked_fill, not a product: a NaN or Inf gradient slice must not reach a frozen slice.
        return g.masked_fill(h->zero, 0);
      });
    }
  }
  at::NoGradGuard no_grad;
  m.hook->zero = at::Tensor();
  if (frozen.empty()) {
    m.train_index = at::Tensor();
    bool held = false;
    if (optimizer && had_compact) {
      held = replace(*optimizer, old, t);
      move_state(*optimizer, old, t, Remap(old_train, m.train));
    }
    m.compact = at::Tensor();
    return held;
  }
  m.train_index = at::tensor(std::vector<int64_t>(m.train.begin(), m.train.end()),
                             at::TensorOptions().dtype(at::kLong))
                      .to(t.device());
  // The frozen slices' gradient reads 0 everywhere — gradient clipping, logging, sync — and,
  // without an optimizer attached, plain SGD stays exact.
  m.hook->zero = mask_of(t, frozen);
  if (t.grad().defined()) t.mutable_grad().masked_fill_(m.hook->zero, 0);
  if (!optimizer) {
    m.compact = at::Tensor();
    return false;
  }
  attached_ = true;
  at::Tensor c = t.detach().index_select(0, m.train_index);
  c.set_requires_grad(true);
  const bool held = replace(*optimizer, old, c);
  move_state(*optimizer, old, c, Remap(old_train, m.train));
  m.compact = c;
  if (held) ensure_eager_state(*optimizer, {c});
  return held;
}

void SliceMasks::forget_pending() {
  *seen_ = false;
  step_pending_ = false;
}

void SliceMasks::clear(uint32_t i, torch::optim::Optimizer* optimizer, bool keep_state) {
  auto it = masks_.find(i);
  if (it == masks_.end()) return;
  Mask& m = it->second;
  at::Tensor& t = (*tensors_)[i];
  publish(t, {});
  at::NoGradGuard no_grad;
  if (optimizer && m.compact.defined()) {
    replace(*optimizer, m.compact, t);
    if (keep_state)
      move_state(*optimizer, m.compact, t, Remap(m.train, all_slices(t.size(0))));
    else
      compat::erase_optimizer_state(*optimizer, m.compact);
  }
  m.frozen.clear();
  m.train.clear();
  m.train_index = at::Tensor();
  m.compact = at::Tensor();
  if (m.hook) m.hook->zero = at::Tensor();
}

void SliceMasks::attach(torch::optim::Optimizer& optimizer) {
  attached_ = true;
  for (auto& [i, m] : masks_)
    if (!m.frozen.empty()) set(i, std::vector<int32_t>(m.frozen), &optimizer);
}

void SliceMasks::forget_optimizer() {
  for (auto& [i, m] : masks_) m.compact = at::Tensor();
  attached_ = false;
  step_pending_ = false;
}

const at::Tensor& SliceMasks::held(uint32_t i) const {
  auto it = masks_.find(i);
  return it != masks_.end() && it->second.compact.defined() ? it->second.compact : (*tensors_)[i];
}

std::vector<at::Tensor> SliceMasks::held_all() const {
  std::vector<at::Tensor> out = *tensors_;
  for (const auto& [i, m] : masks_)
    if (m.compact.defined()) out[i] = m.compact;
  return out;
}

const at::Tensor* SliceMasks::compact_of(uint32_t i) const {
  auto it = masks_.find(i);
  return it != masks_.end() && it->second.compact.defined() ? &it->second.compact : nullptr;
}

bool SliceMasks::compact() const {
  for (const auto& [i, m] : masks_)
    if (m.compact.defined()) return true;
  return false;
}

bool SliceMasks::backward_pending() const { return attached_ && *seen_; }

void SliceMasks::before_step() {
  at::NoGradGuard no_grad;
  bool any = false;
  for (auto& [i, m] : masks_) {
    if (!m.compact.defined()) continue;
    any = true;
    at::Tensor& t = (*tensors_)[i];
    // The weights too: the model's tensor is the truth (a checkpoint may have been loaded into it).
    at::index_select_out(m.compact, t.detach(), 0, m.train_index);
    if (t.grad().defined()) {
      at::Tensor& cg = m.compact.mutable_grad();
      if (cg.defined() && cg.sizes() == m.compact.sizes() && cg.dtype() == t.grad().dtype())
        at::index_select_out(cg, t.grad(), 0, m.train_index);
      else
        cg = t.grad().index_select(0, m.train_index);
      t.mutable_grad().reset();  // the whole gradient is not kept across steps
    } else {
      // No backward reached the tensor: the optimizer skips it, as a tensor without gradient.
      m.compact.mutable_grad().reset();
    }
  }
  *seen_ = false;
  step_pending_ = any;
}

void SliceMasks::after_step() {
  if (!step_pending_) return;
  at::NoGradGuard no_grad;
  for (auto& [i, m] : masks_)
    if (m.compact.defined()) (*tensors_)[i].index_copy_(0, m.train_index, m.compact);
  step_pending_ = false;
}

std::vector<int32_t> SliceMasks::frozen_slices(uint32_t i) const {
  auto it = masks_.find(i);
  return it == masks_.end() ? std::vector<int32_t>{} : it->second.frozen;
}

}  // namespace layerfreeze
