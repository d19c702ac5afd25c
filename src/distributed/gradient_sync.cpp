// Trainable-only gradient synchronisation. The trainable parameters are packed into flat
// buckets (by dtype and device, in reverse registration order as DDP does, since backward
// produces the last layers' gradients first); each step copies the gradients in, all-reduces
// every bucket (issued together, waited on together), divides by the world size and copies the
// averages back. The layout is rebuilt whenever the executor's generation moves, i.e. when a
// stage changed the trainable set — at the same step on every rank, since the plan is a function
// of time.
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <ATen/Functions.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "distributed/errors.hpp"
#include "layerfreeze/distributed.hpp"

namespace layerfreeze::distributed {

struct GradientSync::Impl {
  struct Bucket {
    at::Tensor flat;
    std::vector<size_t> members;   // indices into params
    std::vector<int64_t> offsets;  // element offset of each member in `flat`
    int64_t bytes = 0, numel = 0;
    // One round (overlap): which slots hold this step's gradient, how many hooked slots are
    // still to come, and the all-reduce once launched.
    std::vector<char> filled;
    int64_t pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };

  c10::intrusive_ptr<c10d::ProcessGroup> group;
  const Executor* executor = nullptr;
  GradientSyncOptions options;
  std::vector<at::Tensor> params;
  std::vector<bool> trainable;
  uint64_t generation = 0;
  bool built = false;
  std::vector<Bucket> buckets;
  int64_t total_bytes = 0, steps = 0;

  // Overlap: hooks on the trainable parameters fill slots during backward and launch buckets in
  // index order (the collective order must be the same on every rank).
  std::mutex mu;
  std::vector<std::pair<at::Tensor, unsigned>> hooks;
  size_t next_launch = 0;
  bool round_started = false, stale_round = false, dirty = false;
  std::string hook_error;

  ~Impl() { remove_hooks(); }

  // The buckets must be (re)built: never built, or a stage changed the trainable set since.
  bool layout_stale() const { return !built || generation != executor->generation(); }

  void remove_hooks() {
    for (auto& [t, id] : hooks) t.remove_hook(id);
    hooks.clear();
  }

  void rebuild() {
    remove_hooks();
    params = executor->parameters();
    trainable.assign(params.size(), false);
    for (size_t i = 0; i < params.size(); ++i) trainable[i] = !executor->is_frozen(i);
    buckets.clear();
    // One open bucket per (dtype, device); a bucket closes when the next tensor would overflow it.
    std::map<std::pair<int, std::string>, Bucket> open;
    auto close = [&](Bucket& b, const at::Tensor& like) {
      if (b.members.empty()) return;
      b.flat = at::zeros({b.numel}, like.options().requires_grad(false));
      buckets.push_back(std::move(b));
      b = Bucket{};
    };
    for (size_t i = params.size(); i-- > 0;) {
      if (!options.all_parameters && !trainable[i]) continue;
      const at::Tensor& t = params[i];
      if (!t.is_floating_point() && !t.is_complex()) continue;  // cannot have a gradient
      Bucket& b = open[{static_cast<int>(t.scalar_type()), t.device().str()}];
      int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
      if (!b.members.empty() && b.bytes + bytes > options.bucket_bytes) close(b, t);
      b.members.push_back(i);
      b.offsets.push_back(b.numel);
      b.numel += t.numel();
      b.bytes += bytes;
    }
    for (auto& [key, b] : open)
      if (!b.members.empty()) close(b, params[b.members.front()]);
    generation = executor->generation();
    built = true;
    if (options.overlap)
      for (size_t bi = 0; bi < buckets.size(); ++bi)
        for (size_t k = 0; k < buckets[bi].members.size(); ++k) {
          const at::Tensor& p = params[buckets[bi].members[k]];
          if (!trainable[buckets[bi].members[k]]) continue;
          hooks.emplace_back(
              p, p.register_hook([this, bi, k](const at::Tensor& g) { on_grad(bi, k, g); }));
        }
    reset_round();
  }

  void reset_round() {
    for (auto& b : buckets) {
      b.filled.assign(b.members.size(), 0);
      b.pending = 0;
      b.work.reset();
      for (size_t k = 0; k < b.members.size(); ++k) {
        if (options.overlap && !trainable[b.members[k]]) {
          b.flat.narrow(0, b.offsets[k], params[b.members[k]].numel())
              .zero_();  // frozen: no gradient, a zero
          b.filled[k] = 1;
        } else if (options.overlap) {
          ++b.pending;
        }
      }
    }
    next_launch = 0;
    round_started = stale_round = dirty = false;
  }

  // A gradient arrives during backward (overlap). Slot = the gradient the parameter will hold
  // once autograd accumulates it, so the result equals the one without overlap, bit for bit.
  void on_grad(size_t bi, size_t k, const at::Tensor& incoming) {
    std::lock_guard<std::mutex> lock(mu);
    if (!round_started) {
      round_started = true;
      // A stage changed since the hooks were set (on_step before this backward): the same on
      // every rank, so every rank leaves this round to synchronize().
      stale_round = executor->generation() != generation;
    }
    if (stale_round || !hook_error.empty()) return;
    Bucket& b = buckets[bi];
    if (b.work || b.filled[k] || incoming.layout() != at::kStrided) {
      dirty = true;  // a second backward before synchronize() (accumulation), or sparse
      return;
    }
    try {
      at::NoGradGuard no_grad;
      const at::Tensor& p = params[b.members[k]];
      at::Tensor dst = b.flat.narrow(0, b.offsets[k], p.numel());
      const at::Tensor& held = p.grad();
      if (held.defined()) {
        dst.copy_(held.reshape({-1}));
        dst.add_(incoming.reshape({-1}));
      } else {
        dst.copy_(incoming.reshape({-1}));
      }
      b.filled[k] = 1;
      --b.pending;
      while (next_launch < buckets.size() && buckets[next_launch].pending == 0)
        launch(buckets[next_launch++]);
    } catch (const std::exception& e) {
      hook_error = e.what();
    }
  }

  void launch(Bucket& b) {
    std::vector<at::Tensor> one{b.flat};
    b.work = group->allreduce(one);
  }

  void fill_from_grad(Bucket& b, size_t k) {
    const at::Tensor& p = params[b.members[k]];
    at::Tensor dst = b.flat.narrow(0, b.offsets[k], p.numel());
    const at::Tensor& g = p.grad();
    if (g.defined() && g.layout() != at::kStrided)
      fail("distributed-setup",
           "'" + executor->inventory().params()[b.members[k]].name +
               "' has a sparse gradient; GradientSync averages dense gradients only",
           {"construct the embedding without sparse gradients (EmbeddingOptions::sparse(false))"});
    if (g.defined())
      dst.copy_(g.reshape({-1}));
    else
      dst.zero_();
    b.filled[k] = 1;
  }

  // Launches, in order, every bucket not launched yet (slots still empty take the parameter's
  // gradient, or zero), then waits for all of them.
  void complete_round(SyncStats& s) {
    for (auto& b : buckets) {
      if (!b.work) {
        for (size_t k = 0; k < b.members.size(); ++k)
          if (!b.filled[k]) fill_from_grad(b, k);
        launch(b);
      }
      s.bytes += b.bytes;
      s.tensors += static_cast<int64_t>(b.members.size());
      ++s.buckets;
    }
    for (auto& b : buckets) b.work->wait();
  }

  void write_back() {
    const double world = static_cast<double>(group->getSize());
    for (auto& b : buckets) {
      b.flat.div_(world);
      for (size_t k = 0; k < b.members.size(); ++k) {
        at::Tensor& p = params[b.members[k]];
        if (!trainable[b.members[k]]) continue;  // a frozen parameter keeps no gradient
        at::Tensor avg = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.sizes());
        if (p.grad().defined())
          p.mutable_grad().copy_(avg);
        else
          p.mutable_grad() = avg.clone();
      }
    }
  }

  SyncStats synchronize() {
    SyncStats s;
    std::lock_guard<std::mutex> lock(mu);
    at::NoGradGuard no_grad;
    guarded("all-reducing gradients", [&] {
      if (!hook_error.empty()) {
        std::string e = hook_error;
        hook_error.clear();
        throw std::runtime_error(e);
      }
      const bool layout_changed = layout_stale();
      if (layout_changed || dirty || stale_round) {
        // This round's overlapped results cannot be used. Buckets the hooks launched were
        // launched on every rank: complete the round so the collectives stay matched, then
        // run a plain round from the parameters' gradients.
        if (next_launch > 0) complete_round(s);
        if (layout_changed) {
          rebuild();
          s.rebuilt = true;
        } else {
          reset_round();
        }
        // A plain round ignores the hooks' slots: every slot from the gradient.
        for (auto& b : buckets) std::fill(b.filled.begin(), b.filled.end(), 0);
      } else {
        s.overlapped = static_cast<int64_t>(next_launch);
      }
      complete_round(s);
      write_back();
    });
    reset_round();
    total_bytes += s.bytes;
    ++steps;
    return s;
  }
};

GradientSync::GradientSync(c10::intrusive_ptr<c10d::ProcessGroup> group, const Executor& executor,
                           GradientSyncOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (!group) fail("distributed-setup", "GradientSync needs a process group");
  if (options.bucket_bytes <= 0)
    fail("distributed-setup",
         "bucket_bytes must be positive (it is " + std::to_string(options.bucket_bytes) + ")");
  impl_->group = std::move(group);
  impl_->executor = &executor;
  impl_->options = options;
}

GradientSync::~GradientSync() = default;
GradientSync::GradientSync(GradientSync&&) noexcept = default;
GradientSync& GradientSync::operator=(GradientSync&&) noexcept = default;

SyncStats GradientSync::synchronize() { return impl_->synchronize(); }

std::vector<int64_t> GradientSync::bucket_sizes() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->layout_stale()) impl_->rebuild();
  std::vector<int64_t> out;
  for (const auto& b : impl_->buckets) out.push_back(b.bytes);
  return out;
}

int64_t GradientSync::total_bytes() const { return impl_->total_bytes; }
int64_t GradientSync::steps() const { return impl_->steps; }

}  // namespace layerfreeze::distributed
