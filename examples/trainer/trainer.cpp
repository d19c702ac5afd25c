// A tiny trainer written only against the installed layerfreeze package: a GPT-2-shaped
// torch::nn::Module with a tied head, every seed function, and a gradual-unfreezing run with the
// executor. It checks what docs/API.md promises and exits non-zero when anything differs.
#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adamw.h>
#include <layerfreeze/layerfreeze.hpp>

#include <cstdio>
#include <iostream>

namespace nn = torch::nn;

struct BlockImpl : nn::Module {
  explicit BlockImpl(int64_t d)
      : ln(register_module("ln_1", nn::LayerNorm(nn::LayerNormOptions({d})))),
        fc(register_module("mlp", nn::Linear(d, d))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return x + torch::relu(fc->forward(ln->forward(x)));
  }
  nn::LayerNorm ln;
  nn::Linear fc;
};
TORCH_MODULE(Block);

struct TransformerImpl : nn::Module {
  TransformerImpl(int64_t vocab, int64_t d, int64_t layers)
      : wte(register_module("wte", nn::Embedding(vocab, d))),
        wpe(register_module("wpe", nn::Embedding(32, d))),
        h(register_module("h", nn::ModuleList())),
        ln_f(register_module("ln_f", nn::LayerNorm(nn::LayerNormOptions({d})))) {
    for (int64_t i = 0; i < layers; ++i) h->push_back(Block(d));
  }
  nn::Embedding wte, wpe;
  nn::ModuleList h;
  nn::LayerNorm ln_f;
};
TORCH_MODULE(Transformer);

struct HeadImpl : nn::Module {  // lm_head: the same tensor as transformer.wte.weight
  explicit HeadImpl(const torch::Tensor& w) { weight = register_parameter("weight", w); }
  torch::Tensor weight;
};
TORCH_MODULE(Head);

struct GPT2Impl : nn::Module {
  GPT2Impl()
      : transformer(register_module("transformer", Transformer(64, 16, 8))),
        lm_head(register_module("lm_head", Head(transformer->wte->weight))) {}
  torch::Tensor forward(const torch::Tensor& idx) {
    auto x = transformer->wte->forward(idx) + transformer->wpe->forward(torch::arange(idx.size(1)));
    for (const auto& b : *transformer->h) x = b->as<Block>()->forward(x);
    return torch::matmul(transformer->ln_f->forward(x), lm_head->weight.t());
  }
  Transformer transformer;
  Head lm_head;
};
TORCH_MODULE(GPT2);

static int failures = 0;
#define CHECK(cond)                                               \
  do {                                                            \
    if (!(cond)) {                                                \
      std::fprintf(stderr, "trainer: check failed: %s\n", #cond); \
      ++failures;                                                 \
    }                                                             \
  } while (0)

int main() {
  using namespace layerfreeze;
  torch::manual_seed(0);
  GPT2 model;
  const int64_t layer = 32 + 16 * 16 + 16, wte = 64 * 16, wpe = 32 * 16,
                total = wte + wpe + 8 * layer + 32;

  CHECK(get_num_layers(*model) == 8);
  CHECK(get_trainable_params(*model) == total);  // the tied head counts once
  CHECK(freeze_first_n_layers(*model, 4) == 4 * layer);
  CHECK(freeze_embeddings(*model) == wte + wpe);  // composes with the layers
  CHECK(get_frozen_percentage(*model) > 49.0);
  print_layer_status(*model);
  CHECK(unfreeze_model(*model) == total);
  CHECK(freeze_last_n_layers(*model, 2) == 2 * layer);
  unfreeze_model(*model);
  CHECK(freeze_except_last_n(*model, 2) == total - 2 * layer);
  unfreeze_model(*model);
  CHECK(freeze_by_name(*model, std::vector<std::string>{".*mlp.*"}) == 8 * (16 * 16 + 16));
  unfreeze_model(*model);
  CHECK(setup_lp_lora_style(*model, 0.5, true) == 4 * layer + wte + wpe);
  auto savings = get_memory_savings_estimate(*model, OptimizerKind::AdamW);
  CHECK(savings.gradient_saved_bytes == (4 * layer + wte + wpe) * 4);
  CHECK(savings.optimizer_saved_bytes == 2 * savings.gradient_saved_bytes);
  CHECK(get_layer_names(*model).back() == "lm_head");
  auto estimate = estimate_training_time(*model, 50000, 16, 3);
  CHECK(estimate.total_steps == 9375 && estimate.formatted == "1h 18m 7s");
  print_model_summary(*model, 3);
  try {
    freeze_first_n_layers(*model, 9);
    CHECK(false);
  } catch (const layerfreeze::DiagnosticError& e) {  // every error of layerfreeze's C++ API
    CHECK(std::string(e.what()).find("8 layers") != std::string::npos);
  }
  unfreeze_model(*model);

  // Gradual unfreezing over 5 epochs, with a real AdamW training loop.
  GradualUnfreezer unfreezer(*model, /*total_epochs=*/5);
  torch::optim::AdamW opt(unfreezer.executor().trainable_parameters(),
                          torch::optim::AdamWOptions(1e-3));
  unfreezer.executor().attach_optimizer(opt);
  for (int64_t epoch = 0; epoch < 5; ++epoch) {
    unfreezer.step(epoch);
    int64_t open = 0;
    for (int l = 0; l < 8; ++l) open += model->transformer->h[l]->parameters()[0].requires_grad();
    CHECK(open == (8 * epoch + 3) / 4);  // ceil(L * e / (T - 1))
    for (int s = 0; s < 2; ++s) {
      auto idx = torch::randint(0, 64, {2, 8});
      auto loss =
          torch::nn::functional::cross_entropy(model->forward(idx).view({-1, 64}), idx.view({-1}));
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
    std::printf("epoch %lld: trainable %lld of %lld\n", static_cast<long long>(epoch),
                static_cast<long long>(get_trainable_params(*model)),
                static_cast<long long>(total));
  }
  CHECK(!model->transformer->wpe->weight.requires_grad());  // embeddings stay frozen
  std::printf("trainer: %s\n", failures == 0 ? "all checks passed" : "FAILED");
  return failures == 0 ? 0 : 1;
}
