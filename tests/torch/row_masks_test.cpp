// Row masks (docs/ROWS.md): `{tokens: ...}` trains exactly those rows of the token embedding and
// of the output layer — tied and untied — and every other row stays bit-identical, under SGD
// (momentum, Nesterov, weight decay), Adam (AMSGrad, weight decay), AdamW, RMSprop and Adagrad;
// the trainable rows receive exactly what the plain optimizer gives them; the optimizer state and
// the gradient kept across steps exist for the trainable rows only (measured, and equal to the
// plan's memory line); rows that change mid-run carry their state; a run stopped and resumed
// from saved model, optimizer and executor state ends bit-identical to the uninterrupted one.
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>

#include <unistd.h>

#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>

#include "analysis/plan_summary.hpp"
#include "api/plan_access.hpp"
#include "layerfreeze/executor.hpp"
#include "torch/compat.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace row_masks_test {

constexpr int64_t kVocab = 64, kNew = 4;  // the last 4 tokens are "new"

struct OptimizerCase {
  const char* name;
  std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)> make;
  int states;  // state tensors per element after a step
};

std::vector<OptimizerCase> optimizers() {
  return {
      {"sgd_momentum_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::SGD>(
             p, torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(0.1));
       },
       1},
      {"sgd_nesterov_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::SGD>(
             p, torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(0.1));
       },
       1},
      {"adam_amsgrad_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::Adam>(
             p, torch::optim::AdamOptions(1e-2).weight_decay(0.1).amsgrad(true));
       },
       3},
      {"adamw_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::AdamW>(
             p, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
       },
       2},
      {"rmsprop_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::RMSprop>(
             p, torch::optim::RMSpropOptions(1e-2).weight_decay(0.1).momentum(0.5));
       },
       2},
      {"adagrad_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::Adagrad>(
             p, torch::optim::AdagradOptions(1e-2).weight_decay(0.1));
       },
       1},
  };
}

std::string rules_file(const std::string& name, const std::string& text) {
  // One file per process: ctest runs the cases of this file in parallel processes.
  std::string path =
      std::string(::testing::TempDir()) + "/" + name + "-" + std::to_string(::getpid()) + ".yaml";
  std::ofstream(path) << text;
  return path;
}

const char* kNewTokens =
    "rules:\n"
    "  - freeze: all\n"
    "  - unfreeze: {tokens: \"-4:\"}\n";

test::GPT2LMHeadModel model(bool tied) {
  torch::manual_seed(0);
  return test::GPT2LMHeadModel(kVocab, 16, 16, 2, tied);
}

torch::Tensor batch(int64_t step) {
  torch::manual_seed(500 + step);
  // Every sequence holds new tokens: their rows get gradients.
  auto x = torch::randint(kVocab, {4, 9}, torch::kLong);
  x.index_put_({torch::indexing::Slice(), 3}, kVocab - 1 - step % kNew);
  return x;
}

double train_step(test::GPT2LMHeadModel& m, torch::optim::Optimizer& opt, Executor& ex,
                  int64_t step, bool one_call) {
  ex.on_step(step);
  auto x = batch(step);
  compat::zero_grad_in_place(opt);
  auto logits = m->forward(x.slice(1, 0, 8));
  auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, kVocab}),
                                                   x.slice(1, 1, 9).reshape({-1}));
  loss.backward();
  if (one_call) {
    ex.step_optimizer();
  } else {
    ex.before_optimizer_step();
    opt.step();
    ex.after_optimizer_step();
  }
  return loss.item<double>();
}

std::map<std::string, torch::Tensor> snapshot(test::GPT2LMHeadModel& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m->named_parameters(true)) out[p.key()] = p.value().detach().clone();
  return out;
}

// Optimizer state bytes, and gradient bytes kept by what the optimizer holds and by the model
// (the public kept_bytes, include/layerfreeze/executor.hpp).
int64_t state_bytes(torch::optim::Optimizer& opt) { return kept_bytes({}, opt).optimizer_state; }

int64_t kept_grad_bytes(test::GPT2LMHeadModel& m, torch::optim::Optimizer& opt) {
  return kept_bytes(m->parameters(), opt).gradients;
}

struct Case {
  OptimizerCase opt;
  bool tied;
};

class RowMasks : public ::testing::TestWithParam<Case> {};

TEST_P(RowMasks, OnlyTheNewTokensRowsMoveAndStateIsTheirsOnly) {
  const auto& c = GetParam();
  auto m = model(c.tied);
  const auto start = snapshot(m);
  Executor ex(*m, rules_file("new_tokens", kNewTokens));
  // Untied: the LibTorch habit, every tensor (frozen ones too); tied: model->parameters() lists
  // the tied tensor twice, so the executor's list.
  auto opt = c.opt.make(c.tied ? ex.trainable_parameters() : m->parameters());
  ex.attach_optimizer(*opt);
  for (int64_t step = 0; step < 8; ++step) train_step(m, *opt, ex, step, step % 2 == 0);
  const auto now = snapshot(m);
  // Tied, the two names are one tensor.
  const std::set<std::string> cut = {"transformer.wte.weight", "lm_head.weight"};
  const int64_t tensors_cut = c.tied ? 1 : 2;
  for (const auto& [name, before] : start) {
    const torch::Tensor& after = now.at(name);
    if (!cut.count(name)) {
      EXPECT_TRUE(torch::equal(before, after)) << name;
      continue;
    }
    EXPECT_TRUE(torch::equal(before.slice(0, 0, kVocab - kNew), after.slice(0, 0, kVocab - kNew)))
        << name << " (" << c.opt.name << ")";
    for (int64_t r = kVocab - kNew; r < kVocab; ++r)
      EXPECT_FALSE(torch::equal(before[r], after[r])) << name << " row " << r;
  }
  // The optimizer holds compact tensors of the 4 trainable rows; its state and the gradients it
  // keeps are theirs only: 4 rows × 16 × 4 bytes per tensor cut.
  const int64_t row_bytes = kNew * 16 * 4 * tensors_cut;
  EXPECT_EQ(state_bytes(*opt), row_bytes * c.opt.states) << c.opt.name;
  EXPECT_EQ(kept_grad_bytes(m, *opt), row_bytes);
  const auto& plan = PlanAccess::compiled(ex.plan());
  for (uint32_t i : plan.slices.params) {
    EXPECT_FALSE(ex.parameters()[i].grad().defined());  // the whole gradient is not kept
    ASSERT_NE(ex.compact_tensor(i), nullptr);
    EXPECT_EQ(ex.compact_tensor(i)->size(0), kNew);
  }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const auto& o : optimizers())
    for (bool tied : {true, false}) out.push_back({o, tied});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Optimizers, RowMasks, ::testing::ValuesIn(cases()), [](const auto& info) {
  return std::string(info.param.opt.name) + (info.param.tied ? "_tied" : "_untied");
});

// With a loss that is a sum of per-element terms, every element's gradient depends on that
// element only: the trainable rows of a masked run must equal a run of the plain optimizer on
// the whole tensors, bit for bit (weight decay, momentum, moments all torch's own).
class RowMaskExactness : public ::testing::TestWithParam<OptimizerCase> {};

TEST_P(RowMaskExactness, TrainableRowsGetExactlyWhatThePlainOptimizerGives) {
  auto masked = model(false);
  auto plain = model(false);
  Executor ex(*masked, rules_file("exact", kNewTokens));
  auto mopt = GetParam().make(ex.trainable_parameters());
  ex.attach_optimizer(*mopt);
  auto popt = GetParam().make(plain->parameters());
  std::vector<torch::Tensor> mp = ex.parameters(), pp;
  auto plain_named = plain->named_parameters(true);
  for (const auto& p : ex.inventory().params()) pp.push_back(plain_named[p.name]);
  std::vector<torch::Tensor> targets;
  for (const auto& t : mp) targets.push_back(torch::randn_like(t));
  auto step = [&](const std::vector<torch::Tensor>& params, torch::optim::Optimizer& opt,
                  Executor* e) {
    compat::zero_grad_in_place(opt);
    auto loss = torch::zeros({});
    for (size_t i = 0; i < params.size(); ++i)
      loss = loss + (params[i] - targets[i]).pow(2).sum() + 0.1 * params[i].pow(4).sum();
    loss.backward();
    if (e)
      e->step_optimizer();
    else
      opt.step();
  };
  for (int64_t s = 0; s < 6; ++s) {
    ex.on_step(s);
    step(mp, *mopt, &ex);
    step(pp, *popt, nullptr);
  }
  const auto& plan = PlanAccess::compiled(ex.plan());
  ASSERT_EQ(plan.slices.params.size(), 2u);
  for (uint32_t i : plan.slices.params) {
    auto rows = torch::indexing::Slice(kVocab - kNew, kVocab);
    EXPECT_TRUE(torch::equal(mp[i].index({rows}), pp[i].index({rows})))
        << ex.inventory().params()[i].name << " " << GetParam().name;
  }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, RowMaskExactness, ::testing::ValuesIn(optimizers()),
                         [](const auto& info) { return std::string(info.param.name); });

// Rows that open at a stage start with fresh state, rows that stay trainable keep theirs; the
// plan's memory line equals the bytes measured at every stage.
TEST(RowMaskStages, StateFollowsTheRowsAndMatchesThePlan) {
  auto m = model(false);
  const auto start = snapshot(m);
  Executor ex(*m, rules_file("stages",
                             "rules:\n"
                             "  - freeze: all\n"
                             "  - unfreeze: {tokens: \"-2:\"}\n"
                             "stages:\n"
                             "  - at: {step: 3}\n"
                             "    rules:\n"
                             "      - unfreeze: {tokens: \"-6:\"}\n"
                             "  - at: {step: 6}\n"
                             "    rules:\n"
                             "      - freeze: {tokens: \"-6:\"}\n"
                             "      - unfreeze: {tokens: [60]}\n"));
  torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
  ex.attach_optimizer(opt);
  const auto& plan = PlanAccess::compiled(ex.plan());
  PlanSummary sum = summarize(plan, OptimizerKind::AdamW, plan.horizon(std::nullopt, 9));
  ASSERT_EQ(sum.stages.size(), 3u);
  for (int64_t step = 0; step < 9; ++step) {
    train_step(m, opt, ex, step, true);
    const size_t k = step < 3 ? 0 : step < 6 ? 1 : 2;
    EXPECT_EQ(state_bytes(opt), sum.stages[k].optimizer_bytes) << "step " << step;
    EXPECT_EQ(kept_grad_bytes(m, opt), sum.stages[k].grad_bytes) << "step " << step;
  }
  // Rows 58-59 and 62-63 froze at step 6 after training; row 60 trained from step 3 on.
  const auto now = snapshot(m);
  for (const char* name : {"transformer.wte.weight", "lm_head.weight"}) {
    EXPECT_TRUE(torch::equal(start.at(name).slice(0, 0, 58), now.at(name).slice(0, 0, 58)));
    EXPECT_FALSE(torch::equal(start.at(name)[60], now.at(name)[60]));
    EXPECT_FALSE(torch::equal(start.at(name)[63], now.at(name)[63]));
  }
}

// Stopped after step k and resumed from saved weights, optimizer and executor state, a run ends
// bit-identical to the uninterrupted one (the optimizer's saved state is the compact tensors').
TEST(RowMaskResume, StopAndResumeIsBitIdentical) {
  const char* rules =
      "rules:\n"
      "  - freeze: all\n"
      "  - unfreeze: {tokens: \"-2:\"}\n"
      "stages:\n"
      "  - at: {step: 4}\n"
      "    rules:\n"
      "      - unfreeze: {tokens: \"-4:\"}\n";
  auto full = model(false);
  {
    Executor ex(*full, rules_file("resume_full", rules));
    torch::optim::Adam opt(ex.trainable_parameters(), torch::optim::AdamOptions(1e-2));
    ex.attach_optimizer(opt);
    for (int64_t step = 0; step < 8; ++step) train_step(full, opt, ex, step, true);
  }
  for (int64_t stop : {2, 4, 6}) {
    std::stringstream weights, optimizer;
    std::string state;
    {
      auto m = model(false);
      Executor ex(*m, rules_file("resume_a", rules));
      torch::optim::Adam opt(ex.trainable_parameters(), torch::optim::AdamOptions(1e-2));
      ex.attach_optimizer(opt);
      for (int64_t step = 0; step < stop; ++step) train_step(m, opt, ex, step, true);
      torch::save(m, weights);
      torch::save(opt, optimizer);
      state = ex.state().to_string();
    }
    auto m = model(false);
    torch::load(m, weights);
    Executor ex(*m, rules_file("resume_b", rules));
    torch::optim::Adam opt(ex.trainable_parameters(), torch::optim::AdamOptions(1e-2));
    ex.attach_optimizer(opt);
    ex.restore(ExecutorState::parse(state));
    torch::load(opt, optimizer);
    for (int64_t step = stop; step < 8; ++step) train_step(m, opt, ex, step, true);
    auto a = snapshot(full), b = snapshot(m);
    for (const auto& [name, t] : a)
      EXPECT_TRUE(torch::equal(t, b.at(name))) << name << " stop " << stop;
  }
}

}  // namespace row_masks_test
}  // namespace layerfreeze
