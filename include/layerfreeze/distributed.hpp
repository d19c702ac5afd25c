// layerfreeze::distributed — one freezing plan across the ranks of a data-parallel job, on
// PyTorch's own distributed engine (c10d). Link layerfreeze::distributed.
//
// A plan is a pure function of (rules, parameters, model, time), so every rank computes it
// locally and the ranks change state at the same step. This component makes that safe and cheap:
//   - agree_on_plan(): the ranks all-gather the plan and inventory fingerprints before a step
//     runs; on a mismatch every rank throws the same DiagnosticError, naming the ranks that
//     differ and the first rules parameter, model parameter or stage where they part.
//   - GradientSync: averages the gradients of the currently trainable parameters only, in flat
//     buckets (DDP-style), rebuilt when a stage changes the trainable set; it reports the bytes
//     it communicated.
//   - broadcast_parameters(): rank 0's weights and buffers to every rank, once at the start;
//     broadcast_buffers(): its buffers only, each step, when BatchNorm trains.
//   - make_process_group(): a Gloo (or NCCL, where LibTorch has it) group from torchrun-style
//     environment variables: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
//
//   auto group = layerfreeze::distributed::make_process_group();  // from the environment
//   layerfreeze::Executor ex(*model, "preset:gradual_unfreeze", po);
//   layerfreeze::distributed::agree_on_plan(*group, ex);
//   layerfreeze::distributed::broadcast_parameters(*group, *model);
//   layerfreeze::distributed::GradientSync sync(group, ex);
//   ... loss.backward(); auto stats = sync.synchronize(); optimizer.step();
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "layerfreeze/executor.hpp"

namespace layerfreeze::distributed {

/// How to form a process group.
struct GroupOptions {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";  // where rank 0 serves the TCPStore
  int master_port = 29500;
  std::string backend = "gloo";  // "gloo", or "nccl" when LibTorch was built with it
  /// Bounds every rendezvous and collective: a dead or diverged rank is an error, not a hang.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};

  /// RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (as torchrun and `layerfreeze launch` set them)
  /// and LAYERFREEZE_DIST_TIMEOUT (seconds). Throws DiagnosticError on a missing or bad value.
  static GroupOptions from_env();
};

/// A process group over a TCPStore served by rank 0. Gloo binds to GLOO_SOCKET_IFNAME when set,
/// to the loopback address when the master is local, else to this host's address.
c10::intrusive_ptr<c10d::ProcessGroup> make_process_group(const GroupOptions& options);
c10::intrusive_ptr<c10d::ProcessGroup> make_process_group();  // GroupOptions::from_env()

struct AgreementOptions {
  /// How far ahead the plans are compared when the fingerprints differ (for the explanation
  /// only; the fingerprints cover the whole schedule). {-1, -1}: the plan's default horizon.
  int64_t epochs = -1, steps = -1;
};

/// All-gathers the plan and inventory fingerprints of `executor` on every rank of `group`.
/// Throws DiagnosticError (code plan-disagreement) on every rank when any rank differs; the
/// message and notes are the same on every rank. Collective: every rank must call it.
void agree_on_plan(c10d::ProcessGroup& group, const Executor& executor,
                   const AgreementOptions& options = {});

/// Metric-triggered stages under data parallelism (docs/RULES.md, "Metric triggers"): every
/// rank's `local_value` of `metric` is all-gathered and averaged in rank order, in double
/// precision, on every rank, and the mean is reported to `executor`. Every rank's monitor then
/// sees the same value, bit for bit, so every rank decides the same plateau at the same
/// boundary and changes its frozen set at the same step — and any rank's ExecutorState restores
/// every rank. (Averaging first, rather than broadcasting rank 0's decision, lets each rank's
/// shard of the validation set count and keeps the ranks' saved states identical.) Returns the
/// mean. Collective: every rank must call it, with the same metric name. Weight unequal shards
/// yourself (pass the local sum × world / total count).
double report_metric(c10d::ProcessGroup& group, Executor& executor, const std::string& metric,
                     double local_value);

/// Copies rank `root`'s parameters and buffers into every rank's module, so all start equal.
void broadcast_parameters(c10d::ProcessGroup& group, torch::nn::Module& module, int root = 0);
void broadcast_parameters(c10d::ProcessGroup& group, torch::jit::Module& module, int root = 0);

/// Copies rank `root`'s buffers only (BatchNorm running statistics): what DDP's
/// broadcast_buffers=True does before every forward. Call it each step when normalisation
/// layers train in train mode, or the ranks' running statistics drift apart (each sees only its
/// own data); frozen BatchNorm held in eval mode (`batchnorm: eval_when_frozen`) needs nothing.
void broadcast_buffers(c10d::ProcessGroup& group, torch::nn::Module& module, int root = 0);
void broadcast_buffers(c10d::ProcessGroup& group, torch::jit::Module& module, int root = 0);

struct GradientSyncOptions {
  /// Bytes per flat bucket (DDP's default is 25 MiB). A tensor larger than a bucket gets its own.
  int64_t bucket_bytes = 25LL << 20;
  /// Synchronise every parameter's gradient, frozen or not (what DDP wrapped before freezing
  /// does): the baseline the benchmark compares against. Frozen gradients are sent as zeros.
  bool all_parameters = false;
  /// All-reduce a bucket as soon as backward has produced all its gradients (DDP's overlap),
  /// instead of all at once in synchronize(). The result is the same, bit for bit. A stage
  /// change or a second backward before synchronize() (gradient accumulation) makes that step
  /// fall back to a plain round, after completing what was launched.
  bool overlap = false;
};

/// What one synchronize() did.
struct SyncStats {
  int64_t bytes = 0;       // gradient bytes this rank sent into the all-reduces
  int64_t tensors = 0;     // gradients synchronised
  int64_t buckets = 0;     // all-reduce calls
  bool rebuilt = false;    // the buckets were rebuilt (the trainable set changed)
  int64_t overlapped = 0;  // buckets whose all-reduce started during backward (overlap)
};

/// Averages gradients across the ranks of a group, for the parameters the executor holds
/// trainable now. Call it after backward() and before optimizer.step(), on every rank, every
/// step. A trainable parameter without a gradient on some rank counts as a zero gradient there;
/// after synchronize() every trainable parameter has the same defined gradient on every rank.
/// The buckets follow the executor's stage changes (Executor::generation()); the executor must
/// stay where it is (not moved) and outlive the GradientSync.
class GradientSync {
 public:
  GradientSync(c10::intrusive_ptr<c10d::ProcessGroup> group, const Executor& executor,
               GradientSyncOptions options = {});
  ~GradientSync();
  GradientSync(GradientSync&&) noexcept;
  GradientSync& operator=(GradientSync&&) noexcept;

  SyncStats synchronize();

  /// The bucket layout now: bytes per bucket, in all-reduce order.
  std::vector<int64_t> bucket_sizes() const;
  /// Totals since construction.
  int64_t total_bytes() const;
  int64_t steps() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerfreeze::distributed
