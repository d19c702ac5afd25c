// What the C++ snippets of README.md and docs/ assume exists (tests/docs/snippets.py): a module
// with a loss, its batches, a data loader and a rank's shard of it. Only what the snippets take
// as given — each snippet includes the layerfreeze headers it uses itself.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <layerfreeze/plan.hpp>

struct Batch {
  torch::Tensor x;
};

struct Net : torch::nn::Module {
  torch::Tensor loss(const Batch& b) { return b.x.sum(); }
  // Its forward in two parts, for layerfreeze::PrefixCache (docs/CACHE.md).
  torch::Tensor forward_prefix(const torch::Tensor& x, int64_t k) { return x; }
  torch::Tensor forward_from(const torch::Tensor& h, int64_t k) { return h; }
};

inline const std::vector<Batch>& my_shard_of(const std::vector<Batch>& all) { return all; }
