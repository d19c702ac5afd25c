// Small LibTorch models with real architectures' names, order and tying, for the torch tests:
// a GPT-2 (Hugging Face names, lm_head tied to transformer.wte) and a ResNet with BatchNorm; and
// rules files written for a test.
#pragma once

#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/optimizer.h>

#include "layerfreeze/diagnostics.hpp"
#include "torch/compat.hpp"

#include <unistd.h>

#include <fstream>
#include <functional>
#include <string>

namespace layerfreeze::test {

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(int64_t d) {
    c_attn = register_module("c_attn", torch::nn::Linear(d, 3 * d));
    c_proj = register_module("c_proj", torch::nn::Linear(d, d));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto qkv = c_attn->forward(x).chunk(3, -1);
    auto w = torch::softmax(
        torch::matmul(qkv[0], qkv[1].transpose(-1, -2)) / std::sqrt(double(x.size(-1))), -1);
    return c_proj->forward(torch::matmul(w, qkv[2]));
  }
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(int64_t d) {
    c_fc = register_module("c_fc", torch::nn::Linear(d, 4 * d));
    c_proj = register_module("c_proj", torch::nn::Linear(4 * d, d));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return c_proj->forward(torch::relu(c_fc->forward(x)));
  }
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Mlp);

struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(int64_t d) {
    ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
    attn = register_module("attn", Attention(d));
    ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
    mlp = register_module("mlp", Mlp(d));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = x + attn->forward(ln_1->forward(x));
    return x + mlp->forward(ln_2->forward(x));
  }
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

struct TransformerImpl : torch::nn::Module {
  TransformerImpl(int64_t vocab, int64_t ctx, int64_t d, int64_t layers) {
    wte = register_module("wte", torch::nn::Embedding(vocab, d));
    wpe = register_module("wpe", torch::nn::Embedding(ctx, d));
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < layers; ++i) h->push_back(Block(d));
    ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  }
  torch::Tensor forward(const torch::Tensor& idx) {
    auto x = wte->forward(idx) + wpe->forward(torch::arange(idx.size(1)));
    for (const auto& b : *h) x = b->as<Block>()->forward(x);
    return ln_f->forward(x);
  }
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
};
TORCH_MODULE(Transformer);

// The head registers the embedding matrix as its own weight: one tensor, two names.
struct LMHeadImpl : torch::nn::Module {
  explicit LMHeadImpl(const torch::Tensor& tied) { weight = register_parameter("weight", tied); }
  torch::Tensor forward(const torch::Tensor& x) { return torch::matmul(x, weight.t()); }
  torch::Tensor weight;
};
TORCH_MODULE(LMHead);

struct GPT2LMHeadModelImpl : torch::nn::Module {
  /// `tied` false: the head has a weight of its own (model->parameters() lists each tensor once).
  explicit GPT2LMHeadModelImpl(int64_t vocab = 64, int64_t ctx = 16, int64_t d = 16,
                               int64_t layers = 6, bool tied = true) {
    transformer = register_module("transformer", Transformer(vocab, ctx, d, layers));
    lm_head = register_module("lm_head", LMHead(tied ? transformer->wte->weight
                                                     : transformer->wte->weight.detach().clone()));
  }
  torch::Tensor forward(const torch::Tensor& idx) {
    return lm_head->forward(transformer->forward(idx));
  }
  Transformer transformer{nullptr};
  LMHead lm_head{nullptr};
};
TORCH_MODULE(GPT2LMHeadModel);

struct BasicBlockImpl : torch::nn::Module {
  BasicBlockImpl(int64_t cin, int64_t cout, int64_t stride) {
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(
                     torch::nn::Conv2dOptions(cin, cout, 3).stride(stride).padding(1).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(cout));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::relu(bn1->forward(conv1->forward(x)));
  }
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
};
TORCH_MODULE(BasicBlock);

struct ResNetImpl : torch::nn::Module {
  ResNetImpl() {
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(8));
    layer1 =
        register_module("layer1", torch::nn::Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 8, 1)));
    layer2 = register_module("layer2", torch::nn::Sequential(BasicBlock(8, 16, 2)));
    fc = register_module("fc", torch::nn::Linear(16, 10));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(bn1->forward(conv1->forward(x)));
    y = layer2->forward(layer1->forward(y));
    return fc->forward(y.mean({2, 3}));
  }
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(ResNet);

/// One training step on random tokens: zero_grad, forward, cross-entropy, backward, step.
/// By default it calls the version's `zero_grad()` (1.13: in place; 2.x: to undefined);
/// `zero_in_place` zeroes gradients in place in every version.
inline void train_step(GPT2LMHeadModel& m, torch::optim::Optimizer& opt,
                       bool zero_in_place = false) {
  auto idx = torch::randint(0, 64, {2, 8});
  auto loss = torch::nn::functional::cross_entropy(m->forward(idx).view({-1, 64}), idx.view({-1}));
  if (zero_in_place)
    compat::zero_grad_in_place(opt);
  else
    opt.zero_grad();
  loss.backward();
  opt.step();
}

/// The code of the first diagnostic `f` throws as a DiagnosticError ("" when it does not throw).
inline std::string code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DiagnosticError& e) {
    return e.diagnostics().items().empty() ? "?" : e.diagnostics().items()[0].code;
  }
  return "";
}

/// Writes a rules file into the test's temporary folder; returns its path. One file per process:
/// ctest runs test cases in parallel processes, which must not write each other's files.
inline std::string write_rules(const std::string& name, const std::string& text) {
  std::string path = testing::TempDir() + std::to_string(::getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace layerfreeze::test
