// Forming a process group: a TCPStore served by rank 0 and a Gloo (or NCCL) group over it; and
// broadcasting rank 0's weights (and buffers) so every rank starts, and stays, the same model.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/csrc/jit/api/module.h>
#include <torch/nn/module.h>

#include <cstdlib>
#include <unordered_set>

#include "distributed/errors.hpp"
#include "layerfreeze/distributed.hpp"
#include "torch/compat_c10d.hpp"

namespace layerfreeze::distributed {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

int64_t env_int(const char* name, std::optional<int64_t> fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    if (fallback) return *fallback;
    fail("distributed-env", std::string("environment variable ") + name + " is not set",
         {"launch with `layerfreeze launch --nproc N -- PROGRAM ...` or torchrun, which set RANK, "
          "WORLD_SIZE, "
          "MASTER_ADDR and MASTER_PORT"});
  }
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
    fail("distributed-env", std::string("environment variable ") + name + "='" + v +
                                "' is not an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  return x;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Broadcasts each tensor once (a tied weight is listed under each of its names).
void broadcast_tensors(c10d::ProcessGroup& group, int root,
                       const std::vector<at::Tensor>& tensors) {
  if (root < 0 || root >= group.getSize())
    fail("distributed-setup", "broadcast root " + std::to_string(root) +
                                  " is not a rank of a group of " +
                                  std::to_string(group.getSize()));
  guarded("broadcasting rank " + std::to_string(root) + "'s parameters and buffers", [&] {
    at::NoGradGuard no_grad;
    std::unordered_set<const void*> seen;
    for (const auto& t : tensors) {
      if (!seen.insert(t.unsafeGetTensorImpl()).second) continue;
      // Collectives need contiguous tensors; a strided parameter goes through a copy.
      std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      group.broadcast(one, o)->wait();
      if (!one[0].is_same(t)) t.copy_(one[0]);
    }
  });
}

// The parameters (when `with_parameters`) and buffers of either kind of module.
template <class Module>
std::vector<at::Tensor> state_of(Module& module, bool with_parameters) {
  std::vector<at::Tensor> tensors;
  if (with_parameters)
    for (const auto& p : module.parameters(true)) tensors.push_back(p);
  for (const auto& b : module.buffers(true)) tensors.push_back(b);
  return tensors;
}

}  // namespace

GroupOptions GroupOptions::from_env() {
  GroupOptions o;
  o.world_size = static_cast<int>(env_int("WORLD_SIZE", std::nullopt, 1, 1 << 20));
  o.rank = static_cast<int>(env_int("RANK", std::nullopt, 0, o.world_size - 1));
  o.master_addr = env_or("MASTER_ADDR", o.master_addr);
  o.master_port = static_cast<int>(env_int("MASTER_PORT", int64_t{o.master_port}, 1, 65535));
  o.timeout = std::chrono::seconds(env_int("LAYERFREEZE_DIST_TIMEOUT", int64_t{300}, 1, 86400));
  o.backend = env_or("LAYERFREEZE_DIST_BACKEND", o.backend);
  return o;
}

c10::intrusive_ptr<c10d::ProcessGroup> make_process_group(const GroupOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    fail("distributed-setup", "rank " + std::to_string(o.rank) + " is not in a group of " +
                                  std::to_string(o.world_size));
  if (o.backend != "gloo" && o.backend != "nccl")
    fail("distributed-setup", "unknown backend '" + o.backend + "'",
         {"use gloo (CPU) or nccl (CUDA)"});
#ifndef USE_C10D_NCCL
  if (o.backend == "nccl")
    fail("distributed-setup", "this LibTorch was built without NCCL",
         {"use the gloo backend (Debian's LibTorch is CPU-only)"});
#endif
  return guarded(
      "forming the process group with " + o.master_addr + ":" + std::to_string(o.master_port),
      [&] {
        c10d::TCPStoreOptions so;
        so.port = static_cast<uint16_t>(o.master_port);
        so.isServer = o.rank == 0;
        so.numWorkers = static_cast<size_t>(o.world_size);
        so.timeout = o.timeout;
        auto store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
        c10::intrusive_ptr<c10d::ProcessGroup> group;
#ifdef USE_C10D_NCCL
        if (o.backend == "nccl") {
          auto opts = c10d::ProcessGroupNCCL::Options::create();
          opts->timeout = o.timeout;
          return c10::intrusive_ptr<c10d::ProcessGroup>(
              c10::make_intrusive<c10d::ProcessGroupNCCL>(store, o.rank, o.world_size, opts));
        }
#endif
        auto opts = c10d::ProcessGroupGloo::Options::create(o.timeout);
        const std::string ifname = env_or("GLOO_SOCKET_IFNAME", "");
        if (!ifname.empty())
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
        else if (is_loopback(o.master_addr))
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        else
          opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        opts->threads = 2;
        return compat::gloo_group(store, o.rank, o.world_size, opts);
      },
      "rank " + std::to_string(o.rank) + " waited up to " +
          std::to_string(o.timeout.count() / 1000) + " s for all " + std::to_string(o.world_size) +
          " ranks to meet at " + o.master_addr + ":" + std::to_string(o.master_port) +
          " (GroupOptions::timeout, LAYERFREEZE_DIST_TIMEOUT); did every rank start, with the same "
          "MASTER_ADDR, "
          "MASTER_PORT and WORLD_SIZE?");
}

c10::intrusive_ptr<c10d::ProcessGroup> make_process_group() {
  return make_process_group(GroupOptions::from_env());
}

void broadcast_parameters(c10d::ProcessGroup& group, torch::nn::Module& module, int root) {
  broadcast_tensors(group, root, state_of(module, true));
}
void broadcast_parameters(c10d::ProcessGroup& group, torch::jit::Module& module, int root) {
  broadcast_tensors(group, root, state_of(module, true));
}
void broadcast_buffers(c10d::ProcessGroup& group, torch::nn::Module& module, int root) {
  broadcast_tensors(group, root, state_of(module, false));
}
void broadcast_buffers(c10d::ProcessGroup& group, torch::jit::Module& module, int root) {
  broadcast_tensors(group, root, state_of(module, false));
}

}  // namespace layerfreeze::distributed
