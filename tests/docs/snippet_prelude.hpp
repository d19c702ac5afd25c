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
};

inline const std::vector<Batch>& my_shard_of(const std::vector<Batch>& all) { return all; }
