// TinyMoe: a small mixture-of-experts language model in LibTorch with the names real checkpoints
// use, in both expert layouts (docs/EXPERTS.md):
//   fused       model.layers.N.mlp.experts.gate_up_proj [E, H, 2I], .down_proj [E, I, H]
//               (GPT-OSS, Llama 4, transformers v5)
//   per-expert  model.layers.N.mlp.experts.K.{w1,w3}.weight [I, H], .w2.weight [H, I] (Mixtral)
// and a router model.layers.N.mlp.gate.weight [E, H] with top-k routing. Every expert is
// computed for every token (tiny sizes), weighted by the router's top-k softmax; the router's
// top-k indices and weights of the last forward pass are kept for expert statistics.
#pragma once

#include <torch/nn/functional/activation.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <vector>

namespace tiny_moe {

struct Config {
  int64_t vocab = 96, hidden = 32, intermediate = 32, experts = 8, top_k = 2, layers = 3;
  bool fused = true;
};

struct ExpertsImpl : torch::nn::Module {
  explicit ExpertsImpl(const Config& c) : cfg(c) {
    if (c.fused) {
      gate_up_proj = register_parameter(
          "gate_up_proj", torch::randn({c.experts, c.hidden, 2 * c.intermediate}) * 0.1);
      down_proj = register_parameter("down_proj",
                                     torch::randn({c.experts, c.intermediate, c.hidden}) * 0.1);
    } else {
      for (int64_t e = 0; e < c.experts; ++e) {
        auto m = std::make_shared<torch::nn::Module>();
        m->register_module(
            "w1",
            torch::nn::Linear(torch::nn::LinearOptions(c.hidden, c.intermediate).bias(false)));
        m->register_module(
            "w3",
            torch::nn::Linear(torch::nn::LinearOptions(c.hidden, c.intermediate).bias(false)));
        m->register_module(
            "w2",
            torch::nn::Linear(torch::nn::LinearOptions(c.intermediate, c.hidden).bias(false)));
        list->push_back(m);
      }
    }
  }
  // Every expert's output for every token: [E, T, H].
  torch::Tensor all(const torch::Tensor& x) {
    if (cfg.fused) {
      auto gu = torch::einsum("th,ehi->eti", {x, gate_up_proj});
      auto parts = gu.chunk(2, -1);
      auto act = torch::silu(parts[0]) * parts[1];
      return torch::einsum("eti,eih->eth", {act, down_proj});
    }
    std::vector<torch::Tensor> outs;
    for (const auto& m : *list) {
      auto p = m->named_parameters(true);
      auto a =
          torch::silu(torch::matmul(x, p["w1.weight"].t())) * torch::matmul(x, p["w3.weight"].t());
      outs.push_back(torch::matmul(a, p["w2.weight"].t()));
    }
    return torch::stack(outs);
  }
  Config cfg;
  torch::Tensor gate_up_proj, down_proj;
  torch::nn::ModuleList list;
};
TORCH_MODULE(Experts);

struct MoeImpl : torch::nn::Module {
  explicit MoeImpl(const Config& c) : cfg(c) {
    gate = register_module(
        "gate", torch::nn::Linear(torch::nn::LinearOptions(c.hidden, c.experts).bias(false)));
    experts = Experts(c);
    if (c.fused)
      register_module("experts", experts);
    else
      register_module("experts", experts->list);
  }
  torch::Tensor forward(const torch::Tensor& x) {  // x [T, H]
    auto probs = torch::softmax(gate->forward(x), -1);
    auto top = probs.topk(cfg.top_k, -1);
    auto w = std::get<0>(top) / std::get<0>(top).sum(-1, true);
    last_indices = std::get<1>(top).detach();
    last_weights = w.detach();
    auto dense = torch::zeros_like(probs).scatter(-1, std::get<1>(top), w);  // [T, E]
    return torch::einsum("te,eth->th", {dense, experts->all(x)});
  }
  Config cfg;
  torch::nn::Linear gate{nullptr};
  Experts experts{nullptr};
  torch::Tensor last_indices, last_weights;  // [T, k] of the last forward pass
};
TORCH_MODULE(Moe);

struct LayerImpl : torch::nn::Module {
  explicit LayerImpl(const Config& c) {
    norm = register_module("post_attention_layernorm",
                           torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden})));
    mlp = register_module("mlp", Moe(c));
  }
  torch::Tensor forward(const torch::Tensor& x) { return x + mlp->forward(norm->forward(x)); }
  torch::nn::LayerNorm norm{nullptr};
  Moe mlp{nullptr};
};
TORCH_MODULE(Layer);

struct TinyMoeImpl : torch::nn::Module {
  explicit TinyMoeImpl(const Config& c) : cfg(c) {
    auto model = std::make_shared<torch::nn::Module>();
    embed = model->register_module("embed_tokens", torch::nn::Embedding(c.vocab, c.hidden));
    auto list = torch::nn::ModuleList();
    for (int64_t l = 0; l < c.layers; ++l) {
      layers.push_back(Layer(c));
      list->push_back(layers.back());
    }
    model->register_module("layers", list);
    norm = model->register_module("norm",
                                  torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden})));
    register_module("model", model);
    lm_head = register_module(
        "lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.hidden, c.vocab).bias(false)));
  }
  torch::Tensor forward(const torch::Tensor& tokens) {  // [T] -> logits [T, V]
    auto h = embed->forward(tokens);
    for (auto& l : layers) h = l->forward(h);
    return lm_head->forward(norm->forward(h));
  }
  Config cfg;
  torch::nn::Embedding embed{nullptr};
  std::vector<Layer> layers;
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear lm_head{nullptr};
};
TORCH_MODULE(TinyMoe);

}  // namespace tiny_moe
