// PrefixCache: caches what a frozen prefix computes (docs/CACHE.md). While the executor's plan
// keeps the embeddings and trunk layers [0, k) frozen, their output for a sample is the same every
// epoch; the cache computes it once per sample and hands it back on later passes, so a step runs
// only layers k.. forward and backward. It follows the executor: when the boundary moves it drops
// what it holds (the output of layer k−1 cannot give a shallower layer's) and refills at the new
// one. It never changes a result: a prefix whose output can vary for a sample — dropout or
// BatchNorm in train mode in it, a weight that moved — is not cached, and the cache says why.
//
//   layerfreeze::Executor ex(*model, "preset:lp_lora");
//   layerfreeze::PrefixCache cache(ex, {
//       [&](const torch::Tensor& x, int32_t k) { return model->forward_prefix(x, k); },
//       [&](const torch::Tensor& h, int32_t k) { return model->forward_from(h, k); }});
//   for (...) {                                  // ids: each row's sample id (its dataset index)
//     auto logits = cache.forward(batch, ids);   // instead of model->forward(batch)
//     ...
//   }
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "layerfreeze/executor.hpp"

namespace layerfreeze {

/// What a model offers a PrefixCache: its forward in two parts. For k in [0, num_layers]:
/// `forward_prefix(input, k)` runs the embeddings and trunk layers [0, k) (k = 0: the embeddings'
/// output) and returns the hidden state, one row per sample along dimension 0;
/// `forward_from(hidden, k)` runs layers k.. and everything after them (final norm, head).
/// forward_from(forward_prefix(x, k), k) must be the model's forward for every k. A model that
/// cannot be split this way is not cached (run it without a PrefixCache).
struct PrefixContract {
  std::function<torch::Tensor(const torch::Tensor& input, int32_t k)> forward_prefix;
  std::function<torch::Tensor(const torch::Tensor& hidden, int32_t k)> forward_from;
};

struct PrefixCacheOptions {
  /// Bytes of cached values held in memory; past it, new entries spill to `spill_dir` or, without
  /// one, are not cached (their prefix runs every time).
  int64_t memory_budget = int64_t{1} << 30;
  /// A folder for the spill file (created there, unlinked at once: it goes with the process).
  std::string spill_dir;
  /// The dtype values are kept in: "same" (the prefix output's: exact), "float32", "bfloat16"
  /// or "float16" (half the bytes of float32; the next layer then reads rounded values — no
  /// longer bit-identical to a run without the cache).
  std::string storage = "same";
  /// The first fill at a boundary runs the prefix twice on its batch and compares the outputs
  /// bit for bit: randomness the module tree cannot show (functional dropout, a stochastic
  /// layer) then refuses the cache instead of silently changing training.
  bool verify = true;
};

struct PrefixCacheStats {
  int32_t boundary = -1;         // the k the cache holds values of; -1: none
  int64_t hits = 0, misses = 0;  // rows served from the cache / computed and stored
  int64_t uncached = 0;  // rows computed without storing (no boundary, refused, over budget)
  int64_t entries = 0, memory_bytes = 0, spilled_bytes = 0;
  int64_t drops = 0;    // times the whole cache was dropped (the boundary moved, a weight moved)
  std::string refused;  // why the cache does not serve now; empty: it does
};

class PrefixCache {
 public:
  /// `executor` must outlive the cache. Throws DiagnosticError on a bad option.
  PrefixCache(Executor& executor, PrefixContract model, PrefixCacheOptions options = {});
  ~PrefixCache();
  PrefixCache(PrefixCache&&) noexcept;
  PrefixCache& operator=(PrefixCache&&) noexcept;

  /// The model's output for `input` (one sample per row along dimension 0, `ids` one per row:
  /// stable across epochs, e.g. the dataset index; validation samples need ids of their own — one
  /// that comes with another input is recomputed and replaces the cached value). Rows cached at the
  /// boundary the plan holds now are read; the others run forward_prefix (without autograd: the
  /// prefix is frozen) and are stored; then forward_from runs with autograd. With nothing cacheable
  /// it is forward_from(forward_prefix(input, 0), 0), the model's own forward. Calls from several
  /// threads are serialised.
  torch::Tensor forward(const torch::Tensor& input, const std::vector<int64_t>& ids);
  /// The cached value of sample `id` at the current boundary (a copy in the storage dtype), or
  /// an undefined tensor. Safe to call from data-loader threads alongside forward().
  torch::Tensor lookup(int64_t id) const;
  PrefixCacheStats stats() const;
  /// What the cache reported (each text once): refusals, drops, spills.
  std::vector<std::string> notes() const;
  /// Drops everything held, and forgets a refusal of the double-run check (after a fix, the next
  /// fill checks again).
  void clear();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerfreeze
