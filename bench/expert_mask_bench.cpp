// What exact sub-tensor freezing costs a training step (docs/PERFORMANCE.md, docs/EXPERTS.md):
// one AdamW step (weight decay 0.01) of a fused mixture-of-experts model under the executor,
// with no mask against two experts of eight frozen inside every fused expert tensor — the
// gradient hook (masked_fill of the frozen slices) and the compact tensors the optimizer steps
// instead (docs/ROWS.md): before_optimizer_step gathers the trainable slices' weights and
// gradient, after_optimizer_step writes them back. And that extra work apart, to the op.
//
// The model is examples/esft/tiny_moe.hpp at hidden 256, intermediate 256, 8 experts, top-2, 2
// layers (2.1M parameters, 2.1M of them in fused expert tensors). It computes every expert for
// every token, so a step over T tokens costs what a sparse top-2-of-8 step over 4T tokens costs;
// T = 128 here, far below a real fine-tuning batch — the overhead measured is an upper bound.
//
//   build/expert_mask_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
//       --benchmark_enable_random_interleaving=true
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>

#include <fstream>
#include <memory>
#include <string>

#include "esft/tiny_moe.hpp"
#include "layerfreeze/executor.hpp"

namespace {

constexpr int64_t kTokens = 128;

tiny_moe::Config bench_config() {
  tiny_moe::Config c;
  c.vocab = 128;
  c.hidden = 256;
  c.intermediate = 256;
  c.experts = 8;
  c.top_k = 2;
  c.layers = 2;
  return c;
}

std::string rules(bool masked) {
  std::string path =
      std::string("/tmp/layerfreeze-expert-mask-bench-") + (masked ? "masked" : "none") + ".yaml";
  std::ofstream(path) << (masked ? "rules:\n  - freeze: {experts: [2, 5]}\n" : "rules: []\n");
  return path;
}

struct Run {
  explicit Run(bool masked) : model(bench_config()) {
    ex = std::make_unique<layerfreeze::Executor>(*model, rules(masked));
    opt = std::make_unique<torch::optim::AdamW>(
        ex->trainable_parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.01));
    ex->attach_optimizer(*opt);
    torch::manual_seed(3);
    tokens = torch::randint(0, 128, {kTokens + 1}, torch::kLong);
  }
  void step(int64_t s) {
    ex->on_step(s);
    opt->zero_grad();
    torch::nn::functional::cross_entropy(model->forward(tokens.slice(0, 0, kTokens)),
                                         tokens.slice(0, 1, kTokens + 1))
        .backward();
    ex->step_optimizer();
  }
  tiny_moe::TinyMoe model;
  std::unique_ptr<layerfreeze::Executor> ex;
  std::unique_ptr<torch::optim::AdamW> opt;
  torch::Tensor tokens;
};

// A whole training step: on_step, forward, backward (the hook runs here when masked),
// step_optimizer (masked: gather, AdamW's step of the compact tensors, scatter).
void BM_MoeTrainStep(benchmark::State& state) {
  at::set_num_threads(1);
  torch::manual_seed(0);
  Run run(state.range(0) != 0);
  int64_t s = 0;
  for (int k = 0; k < 3; ++k) run.step(s++);  // optimizer state allocated, caches warm
  for (auto _ : state) run.step(s++);
}
BENCHMARK(BM_MoeTrainStep)
    ->ArgName("masked")
    ->Arg(0)
    ->Arg(1)
    ->MinTime(2.0)
    ->Unit(benchmark::kMillisecond);

// The masks' own work, apart. What a masked step adds to an unmasked one is the hook's
// masked_fill of each fused tensor's gradient plus the gather and scatter around the step, minus
// the AdamW work on the frozen slices it no longer does.
struct Parts {
  Parts() : run(true) {
    at::set_num_threads(1);
    int64_t s = 0;
    for (int k = 0; k < 3; ++k) run.step(s++);
    for (const auto& t : run.ex->parameters())
      if (t.dim() == 3) {
        fused.push_back(t);
        grads.push_back(torch::randn_like(t));
        masks.push_back(torch::zeros({t.size(0), 1, 1}, torch::kBool)
                            .index_fill_(0, torch::tensor({2, 5}, torch::kLong), true));
      }
  }
  Run run;
  std::vector<torch::Tensor> fused, grads, masks;
};

void BM_MaskHook(benchmark::State& state) {
  torch::manual_seed(0);
  Parts p;
  for (auto _ : state)
    for (size_t i = 0; i < p.fused.size(); ++i)
      benchmark::DoNotOptimize(p.grads[i].masked_fill(p.masks[i], 0));
  state.counters["fused_tensors"] = static_cast<double>(p.fused.size());
}
BENCHMARK(BM_MaskHook)->Unit(benchmark::kMillisecond);

// Gather (weights and gradient of the trainable slices) and scatter around one step.
void BM_GatherScatter(benchmark::State& state) {
  torch::manual_seed(0);
  Parts p;
  for (auto _ : state) {
    for (size_t i = 0; i < p.fused.size(); ++i) p.fused[i].mutable_grad() = p.grads[i];
    p.run.ex->before_optimizer_step();
    p.run.ex->after_optimizer_step();
  }
}
BENCHMARK(BM_GatherScatter)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
