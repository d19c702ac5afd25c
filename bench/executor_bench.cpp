// What the executor costs a training loop (docs/PERFORMANCE.md): the per-step call when no
// stage fires, and a stage change — a LISA switch on a 96-layer model — per tensor that changes,
// against toggling requires_grad_ on the same tensors by hand (the floor: what any freezing
// code must do). Counter per_tensor: the time per changed tensor (SI suffix: 58n = 58 ns).
//
//   build/executor_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>
#include <string>
#include <vector>

#include "layerfreeze/executor.hpp"

namespace {

constexpr int kLayers = 96;

// A 96-layer stack of small blocks (four Linear(8, 8) with bias: 8 tensors a layer, 768 in
// all) between an embedding-like input and a head: tensors small enough that what is measured
// is the bookkeeping, not the memory.
struct Stack : torch::nn::Module {
  Stack() {
    register_module("embed", torch::nn::Linear(8, 8));
    layers = register_module("layers", std::make_shared<torch::nn::Module>());
    for (int l = 0; l < kLayers; ++l) {
      auto block =
          layers->register_module(std::to_string(l), std::make_shared<torch::nn::Module>());
      for (const char* name : {"q", "k", "v", "o"})
        block->register_module(name, torch::nn::Linear(8, 8));
    }
    register_module("head", torch::nn::Linear(8, 8));
  }
  std::shared_ptr<torch::nn::Module> layers;
};

// Half the layers active, a new draw every step: every call is a switch.
layerfreeze::PlanOptions lisa_every_step() {
  layerfreeze::PlanOptions o;
  o.sets = {"active_layers=48", "interval_steps=1"};
  return o;
}

// The frozen state after each of `switches` steps of `ex`, as one flag per parameter of
// `model` (named_parameters order).
std::vector<std::vector<bool>> frozen_states(const Stack& model, layerfreeze::Executor& ex,
                                             int64_t& step, int switches) {
  std::vector<std::string> names;
  for (const auto& p : model.named_parameters()) names.push_back(p.key());
  std::vector<std::vector<bool>> states;
  for (int k = 0; k < switches; ++k) {
    ex.on_step(++step);
    std::vector<bool> f(names.size(), false);
    for (const auto& n : ex.frozen_names())
      f[static_cast<size_t>(std::find(names.begin(), names.end(), n) - names.begin())] = true;
    states.push_back(std::move(f));
  }
  return states;
}

size_t differing(const std::vector<bool>& a, const std::vector<bool>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

constexpr int kSwitches = 64;

void BM_LisaSwitch(benchmark::State& state) {
  auto model = std::make_shared<Stack>();
  layerfreeze::Executor ex(*model, "preset:lisa", lisa_every_step());
  int64_t step = 0;
  auto states = frozen_states(*model, ex, step, kSwitches);
  size_t changed = 0;
  for (int k = 1; k < kSwitches; ++k) changed += differing(states[k - 1], states[k]);
  const double per_switch = static_cast<double>(changed) / (kSwitches - 1);
  for (auto _ : state) ex.on_step(++step);
  state.counters["tensors_per_switch"] = per_switch;
  state.counters["per_tensor"] =
      benchmark::Counter(per_switch * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_LisaSwitch);

// The floor: the same switches (the tensors a LISA run changes, in the same order of states)
// made by hand — requires_grad_ flipped, the gradient of what is frozen dropped.
void BM_BareToggle(benchmark::State& state) {
  auto model = std::make_shared<Stack>();
  std::vector<std::vector<bool>> states;
  {
    layerfreeze::Executor ex(*model, "preset:lisa", lisa_every_step());
    int64_t step = 0;
    states = frozen_states(*model, ex, step, kSwitches);
  }
  std::vector<torch::Tensor> tensors = model->parameters();
  // Switch k goes from state k to state k+1 (the last back to the first): which tensors flip.
  std::vector<std::vector<std::pair<size_t, bool>>> switches(kSwitches);
  size_t changed = 0;
  for (int k = 0; k < kSwitches; ++k) {
    const auto& from = states[k];
    const auto& to = states[(k + 1) % kSwitches];
    for (size_t i = 0; i < to.size(); ++i)
      if (from[i] != to[i]) switches[k].push_back({i, to[i]});
    changed += switches[k].size();
  }
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].requires_grad_(!states[0][i]);
  int k = 0;
  for (auto _ : state) {
    for (const auto& [i, frozen] : switches[k]) {
      torch::Tensor& t = tensors[i];
      t.requires_grad_(!frozen);
      if (frozen) t.mutable_grad().reset();
    }
    k = (k + 1) % kSwitches;
  }
  const double per_switch = static_cast<double>(changed) / kSwitches;
  state.counters["tensors_per_switch"] = per_switch;
  state.counters["per_tensor"] =
      benchmark::Counter(per_switch * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_BareToggle);

// The call a training loop makes every step when no stage fires.
void BM_ExecutorNoChange(benchmark::State& state) {
  auto model = std::make_shared<Stack>();
  layerfreeze::PlanOptions o;
  o.sets = {"interval_steps=1000000000"};
  layerfreeze::Executor ex(*model, "preset:lisa", o);
  int64_t step = 0;
  for (auto _ : state) benchmark::DoNotOptimize(ex.on_step(++step));
}
BENCHMARK(BM_ExecutorNoChange);

}  // namespace

BENCHMARK_MAIN();
