// Trainable-only gradient synchronisation. The trainable parameters are packed into flat
// buckets (by dtype and device, in reverse registration order as DDP does, since backward
// produces the last layers' gradients first); each step copies the gradients in, all-reduces
// every bucket (issued together, waited on together), divides by the world size and copies the
// averages back. The layout is rebuilt whenever the executor's generation moves, i.e. when a
// stage changed the trainable set — at the same step on every rank, since the plan is a function
// of time.
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <ATen/Functions.h>

#include <map>

#include "distributed/errors.hpp"
#include "layerfreeze/distributed.hpp"

namespace layerfreeze::distributed {

struct GradientSync::Impl {
  struct Bucket {
    at::Tensor flat;
    std::vector<size_t> members;   // indices into params
    std::vector<int64_t> offsets;  // element offset of each member in `flat`
    int64_t bytes = 0, numel = 0;
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

  void rebuild() {
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
  }

  SyncStats synchronize() {
    SyncStats s;
    if (!built || generation != executor->generation()) {
      rebuild();
      s.rebuilt = true;
    }
    at::NoGradGuard no_grad;
    const double world = static_cast<double>(group->getSize());
    guarded("all-reducing gradients", [&] {
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (auto& b : buckets) {
        for (size_t k = 0; k < b.members.size(); ++k) {
          const at::Tensor& p = params[b.members[k]];
          at::Tensor dst = b.flat.narrow(0, b.offsets[k], p.numel());
          const at::Tensor& g = p.grad();
          if (g.defined() && g.layout() != at::kStrided)
            fail("distributed-setup", "'" + executor->inventory().params[b.members[k]].name +
                                          "' has a sparse gradient; GradientSync averages dense gradients only",
                 {"construct the embedding without sparse gradients (EmbeddingOptions::sparse(false))"});
          if (g.defined()) dst.copy_(g.reshape({-1}));
          else dst.zero_();
        }
        std::vector<at::Tensor> one{b.flat};
        works.push_back(group->allreduce(one));
        s.bytes += b.bytes;
        s.tensors += static_cast<int64_t>(b.members.size());
        ++s.buckets;
      }
      for (auto& w : works) w->wait();
      for (auto& b : buckets) {
        b.flat.div_(world);
        for (size_t k = 0; k < b.members.size(); ++k) {
          at::Tensor& p = params[b.members[k]];
          if (!trainable[b.members[k]]) continue;  // a frozen parameter keeps no gradient
          at::Tensor avg = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.sizes());
          if (p.grad().defined()) p.mutable_grad().copy_(avg);
          else p.mutable_grad() = avg.clone();
        }
      }
    });
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
    fail("distributed-setup", "bucket_bytes must be positive (it is " + std::to_string(options.bucket_bytes) + ")");
  impl_->group = std::move(group);
  impl_->executor = &executor;
  impl_->options = options;
}

GradientSync::~GradientSync() = default;
GradientSync::GradientSync(GradientSync&&) noexcept = default;
GradientSync& GradientSync::operator=(GradientSync&&) noexcept = default;

SyncStats GradientSync::synchronize() { return impl_->synchronize(); }

std::vector<int64_t> GradientSync::bucket_sizes() const {
  if (!impl_->built || impl_->generation != impl_->executor->generation()) impl_->rebuild();
  std::vector<int64_t> out;
  for (const auto& b : impl_->buckets) out.push_back(b.bytes);
  return out;
}

int64_t GradientSync::total_bytes() const { return impl_->total_bytes; }
int64_t GradientSync::steps() const { return impl_->steps; }

}  // namespace layerfreeze::distributed
