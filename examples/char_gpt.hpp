// A small character-level GPT in LibTorch with GPT-2's parameter names (transformer.wte, .wpe,
// .h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, .ln_f; lm_head tied to wte),
// so every layerfreeze preset applies to it as to GPT-2. Used by the examples and the benchmark.
#pragma once

#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

namespace char_gpt {

struct Config {
  int64_t vocab = 128, ctx = 64, d = 128, layers = 4, heads = 4;
  /// Dropout modules, as GPT-2 has them: after each block's attention and MLP (`resid_dropout`)
  /// and after the embeddings (`embd_dropout`, GPT-2's `transformer.drop`). 0: none registered.
  double resid_dropout = 0, embd_dropout = 0;
  bool tie_head = true;  // false: lm_head has its own weight (as Llama's)
};

/// The benchmarks' model: 12 layers × 512, vocab 8192, sequence 128 (42.1M parameters).
inline Config bench_config() {
  Config c;
  c.vocab = 8192;
  c.ctx = 128;
  c.d = 512;
  c.layers = 12;
  c.heads = 8;
  return c;
}

struct AttnImpl : torch::nn::Module {
  AttnImpl(const Config& c) : heads(c.heads) {
    c_attn = register_module("c_attn", torch::nn::Linear(c.d, 3 * c.d));
    c_proj = register_module("c_proj", torch::nn::Linear(c.d, c.d));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2), hd = C / heads;
    auto qkv = c_attn->forward(x).view({B, T, 3, heads, hd}).permute({2, 0, 3, 1, 4});
    auto att = torch::matmul(qkv[0], qkv[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
    auto mask = torch::ones({T, T}, torch::kBool).triu(1);
    att = torch::softmax(att.masked_fill(mask, -1e9), -1);
    return c_proj->forward(torch::matmul(att, qkv[2]).transpose(1, 2).reshape({B, T, C}));
  }
  int64_t heads;
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Attn);

struct MlpImpl : torch::nn::Module {
  MlpImpl(const Config& c) {
    c_fc = register_module("c_fc", torch::nn::Linear(c.d, 4 * c.d));
    c_proj = register_module("c_proj", torch::nn::Linear(4 * c.d, c.d));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return c_proj->forward(torch::gelu(c_fc->forward(x)));
  }
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Mlp);

struct BlockImpl : torch::nn::Module {
  BlockImpl(const Config& c) {
    ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d})));
    attn = register_module("attn", Attn(c));
    ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d})));
    mlp = register_module("mlp", Mlp(c));
    if (c.resid_dropout > 0) drop = register_module("drop", torch::nn::Dropout(c.resid_dropout));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto d = [this](torch::Tensor y) { return drop ? drop->forward(y) : y; };
    x = x + d(attn->forward(ln_1->forward(x)));
    return x + d(mlp->forward(ln_2->forward(x)));
  }
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Attn attn{nullptr};
  Mlp mlp{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(Block);

struct TransformerImpl : torch::nn::Module {
  TransformerImpl(const Config& c) {
    wte = register_module("wte", torch::nn::Embedding(c.vocab, c.d));
    wpe = register_module("wpe", torch::nn::Embedding(c.ctx, c.d));
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.layers; ++i) h->push_back(Block(c));
    ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d})));
    if (c.embd_dropout > 0) drop = register_module("drop", torch::nn::Dropout(c.embd_dropout));
  }
  torch::nn::Dropout drop{nullptr};
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
};
TORCH_MODULE(Transformer);

struct LMHeadImpl : torch::nn::Module {  // GPT-2 ties the output projection to the embedding
  explicit LMHeadImpl(const torch::Tensor& w) { weight = register_parameter("weight", w); }
  torch::Tensor weight;
};
TORCH_MODULE(LMHead);

struct GPTImpl : torch::nn::Module {
  explicit GPTImpl(const Config& c) : cfg(c) {
    transformer = register_module("transformer", Transformer(c));
    lm_head = register_module("lm_head", LMHead(c.tie_head ? transformer->wte->weight
                                                           : torch::randn({c.vocab, c.d}) * 0.02));
  }
  torch::Tensor forward(const torch::Tensor& idx) {
    return forward_from(forward_prefix(idx, 0), 0);
  }
  // The forward in two parts, as layerfreeze::PrefixCache asks (docs/CACHE.md): the embeddings
  // and blocks [0, k), then blocks k.. with the final norm and the head.
  torch::Tensor forward_prefix(const torch::Tensor& idx, int64_t k) {
    auto x = transformer->wte->forward(idx) + transformer->wpe->forward(torch::arange(idx.size(1)));
    if (transformer->drop) x = transformer->drop->forward(x);
    for (int64_t i = 0; i < k; ++i) x = (*transformer->h)[i]->as<Block>()->forward(x);
    return x;
  }
  torch::Tensor forward_from(torch::Tensor x, int64_t k) {
    for (int64_t i = k; i < static_cast<int64_t>(transformer->h->size()); ++i)
      x = (*transformer->h)[i]->as<Block>()->forward(x);
    return torch::matmul(transformer->ln_f->forward(x), lm_head->weight.t());
  }
  torch::Tensor loss(const torch::Tensor& batch) {  // next-character prediction
    auto in = batch.narrow(1, 0, batch.size(1) - 1), target = batch.narrow(1, 1, batch.size(1) - 1);
    return torch::nn::functional::cross_entropy(forward(in).reshape({-1, cfg.vocab}),
                                                target.reshape({-1}));
  }
  Config cfg;
  Transformer transformer{nullptr};
  LMHead lm_head{nullptr};
};
TORCH_MODULE(GPT);

/// A text file as byte tokens (ASCII; other bytes map to '?').
inline torch::Tensor read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kLong);
  auto a = t.accessor<int64_t, 1>();
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    a[static_cast<int64_t>(i)] = c < 128 ? c : '?';
  }
  return t;
}

/// `batch` random windows of `len` tokens.
inline torch::Tensor sample(const torch::Tensor& text, int64_t batch, int64_t len) {
  auto starts = torch::randint(0, text.size(0) - len, {batch}, torch::kLong);
  auto offsets = torch::arange(len).unsqueeze(0);
  return text.index({(starts.unsqueeze(1) + offsets).reshape({-1})}).reshape({batch, len});
}

/// Mean loss over fixed windows of `text` (seeded, so every strategy is scored alike).
inline double eval_loss(GPT& model, const torch::Tensor& text, int64_t batches = 8) {
  torch::NoGradGuard no_grad;
  double total = 0;
  for (int64_t b = 0; b < batches; ++b) {
    int64_t len = model->cfg.ctx;
    int64_t stride = std::max<int64_t>(1, (text.size(0) - len - 1) / (batches * 16));
    auto starts = torch::arange(b * 16, b * 16 + 16) * stride;
    auto offsets = torch::arange(len).unsqueeze(0);
    auto batch = text.index({(starts.unsqueeze(1) + offsets).reshape({-1})}).reshape({16, len});
    total += model->loss(batch).item<double>();
  }
  return total / static_cast<double>(batches);
}

}  // namespace char_gpt
