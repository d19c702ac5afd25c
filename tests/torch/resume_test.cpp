// Fault tests: a run killed at an arbitrary step and resumed from its checkpoint (weights,
// optimizer state, executor state) ends, under every preset, with the same requires_grad states,
// optimizer groups and bit-identical weights as an uninterrupted run; and the drift guard catches a
// frozen tensor written behind the executor's back.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>

#include <sstream>

#include "layerfreeze/executor.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace {

using test::GPT2LMHeadModel;

struct TrainingRun {
  GPT2LMHeadModel model{nullptr};
  std::unique_ptr<Executor> ex;
  std::unique_ptr<torch::optim::AdamW> opt;
};

constexpr int64_t kStepsPerEpoch = 3, kEpochs = 4, kSteps = kStepsPerEpoch * kEpochs;

TrainingRun start(const std::string& preset, const std::vector<std::string>& sets) {
  torch::manual_seed(0);
  TrainingRun r;
  r.model = GPT2LMHeadModel();
  PlanOptions po;
  po.sets = sets;
  po.steps_per_epoch = kStepsPerEpoch;
  r.ex = std::make_unique<Executor>(*r.model, "preset:" + preset, po);
  r.opt = std::make_unique<torch::optim::AdamW>(r.ex->trainable_parameters(),
                                                torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  r.ex->attach_optimizer(*r.opt);
  return r;
}

void train(TrainingRun& r, int64_t from, int64_t to) {
  for (int64_t step = from; step < to; ++step) {
    if (step % kStepsPerEpoch == 0) r.ex->on_epoch_begin(step / kStepsPerEpoch);
    r.ex->on_step(step);
    torch::manual_seed(1000 + step);  // the data of a step depends on the step only
    auto idx = torch::randint(0, 64, {2, 8});
    auto loss =
        torch::nn::functional::cross_entropy(r.model->forward(idx).view({-1, 64}), idx.view({-1}));
    if (!loss.requires_grad()) continue;  // nothing trains at this step (freeze_all)
    r.opt->zero_grad();
    loss.backward();
    r.opt->step();
  }
}

std::vector<std::vector<std::string>> group_names(TrainingRun& r) {
  std::vector<std::vector<std::string>> out;
  for (const auto& g : r.opt->param_groups()) {
    out.emplace_back();
    for (const auto& t : g.params())
      for (const auto& p : r.model->named_parameters())
        if (p.value().unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) {
          out.back().push_back(p.key());
          break;
        }
  }
  return out;
}

struct ResumePreset {
  std::string preset;
  std::vector<std::string> sets;
};

TEST(Resume, KilledAndResumedEqualsUninterruptedForEveryPreset) {
  at::set_num_threads(1);
  const std::vector<ResumePreset> presets = {
      {"freeze_all", {}},
      {"freeze_first_n", {"n=2"}},
      {"freeze_last_n", {"n=2"}},
      {"freeze_except_last_n", {"n=2"}},
      {"freeze_embeddings", {}},
      {"freeze_by_name", {"patterns=['.*attn.*']"}},
      {"lp_lora", {}},
      {"gradual_unfreeze", {"total_epochs=4", "unfreeze_embeddings_at=2"}},
      {"ulmfit", {}},
      {"bitfit", {}},
      {"norm_tuning", {}},
      {"lisa", {"active_layers=2", "interval_steps=2"}},
      {"badam", {"switch_every=2", "order=reshuffle", "seed=3"}},
      {"badam", {"switch_every=3", "order=descending", "head=block", "embeddings=train"}},
  };
  for (const auto& p : presets) {
    for (int64_t kill_at : {1, 4, 7, 10}) {
      TrainingRun whole = start(p.preset, p.sets);
      train(whole, 0, kSteps);

      TrainingRun first = start(p.preset, p.sets);
      train(first, 0, kill_at);
      // The checkpoint a trainer writes: weights, optimizer, executor state.
      std::stringstream weights, optimizer;
      torch::save(first.model, weights);
      torch::save(*first.opt, optimizer);
      std::string state = first.ex->state().to_string();

      // A new process: build everything afresh, then restore.
      TrainingRun second = start(p.preset, p.sets);
      torch::load(second.model, weights);
      second.ex->restore(ExecutorState::parse(state));
      torch::load(*second.opt, optimizer);
      train(second, kill_at, kSteps);

      std::string where = p.preset + " killed at step " + std::to_string(kill_at);
      EXPECT_EQ(whole.ex->frozen_names(), second.ex->frozen_names()) << where;
      EXPECT_EQ(group_names(whole), group_names(second)) << where;
      auto a = whole.model->named_parameters(), b = second.model->named_parameters();
      for (const auto& item : a) {
        EXPECT_EQ(item.value().requires_grad(), b[item.key()].requires_grad())
            << where << ": " << item.key();
        EXPECT_TRUE(torch::equal(item.value(), b[item.key()]))
            << where << ": " << item.key() << " differs";
      }
    }
  }
}

TEST(DriftGuard, CatchesAFrozenTensorWrittenBehindTheExecutorsBack) {
  GPT2LMHeadModel m;
  PlanOptions po;
  po.sets = {"n=2"};
  Executor ex(*m, "preset:freeze_first_n", po);
  FrozenGuard guard(*m);
  EXPECT_TRUE(guard.changed().empty());
  // An optimizer handed the frozen parameters too, with stale gradients left on them.
  std::vector<torch::Tensor> everything;
  for (const auto& p : m->named_parameters()) everything.push_back(p.value());
  auto frozen = m->transformer->h[0]->as<test::Block>()->mlp->c_fc->weight;
  frozen.mutable_grad() = torch::ones_like(frozen);
  torch::optim::SGD rogue({frozen}, torch::optim::SGDOptions(0.1));
  rogue.step();
  EXPECT_EQ(guard.changed(), std::vector<std::string>{"transformer.h.0.mlp.c_fc.weight"});
  guard.snapshot();
  EXPECT_TRUE(guard.changed().empty());
}

}  // namespace
}  // namespace layerfreeze
