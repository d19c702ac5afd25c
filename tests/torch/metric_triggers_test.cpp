// Metric-triggered stages on a live module (issue 28): a stage that fires when the validation loss
// stops improving, driven by a scripted sequence of values through Executor::report. A run killed
// at any epoch and resumed from its checkpoint (weights, optimizer, executor state) ends
// bit-identical to the uninterrupted one without re-reporting; the history it recorded gives the
// plan it ran; misuse throws with the fix. Real AdamW steps.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>

#include <sstream>

#include "layerfreeze/executor.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace metric_triggers_test {

using test::code_of;
using test::GPT2LMHeadModel;
using test::write_rules;

constexpr int64_t kStepsPerEpoch = 2, kEpochs = 10;

// The final norm trains first; the top two layers join at the first plateau of val_loss (epoch 6 at
// the latest), everything at the next one, at half the rate.
const char* kRules =
    "rules:\n"
    "  - freeze: all\n"
    "  - unfreeze: {regex: 'transformer\\.ln_f\\..*'}\n"
    "stages:\n"
    "  - name: top\n"
    "    at: {plateau: val_loss, patience: 2, not_after: 6}\n"
    "    rules: [{unfreeze: {layers: \"-2:\"}}]\n"
    "  - name: rest\n"
    "    at: {plateau: val_loss, patience: 1, min_delta: 0.05}\n"
    "    lr_scale: 0.5\n"
    "    rules: [{unfreeze: all}]\n";

// What validation "measured" after each epoch: a plateau after epoch 3 (two reports no better
// than 0.9), then 0.85 after epoch 5 is not 0.05 better than 0.8.
const std::vector<double> kValLoss = {1.0, 0.9, 0.95, 0.93, 0.8, 0.85, 0.79, 0.78, 0.77, 0.76};

struct TrainingRun {
  GPT2LMHeadModel model{nullptr};
  std::unique_ptr<Executor> ex;
  std::unique_ptr<torch::optim::AdamW> opt;
  std::vector<std::string> log;  // transitions seen
};

TrainingRun start(const std::string& rules) {
  torch::manual_seed(0);
  TrainingRun r;
  r.model = GPT2LMHeadModel();
  r.ex = std::make_unique<Executor>(*r.model, rules);
  r.opt = std::make_unique<torch::optim::AdamW>(r.ex->trainable_parameters(),
                                                torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  r.ex->attach_optimizer(*r.opt);
  return r;
}

void listen(TrainingRun& r) {
  auto* log = &r.log;
  r.ex->on_transition([log](const Transition& t) {
    std::string causes;
    for (const auto& c : t.causes) causes += (causes.empty() ? "" : ", ") + c;
    log->push_back("epoch " + std::to_string(t.at.epoch) + (t.metric ? " metric: " : ": ") +
                   causes + " (+" + std::to_string(t.newly_unfrozen) + ")");
  });
}

// Epochs [from, to): begin, train, validate (report).
void train(TrainingRun& r, int64_t from, int64_t to, const std::vector<double>& values = kValLoss) {
  for (int64_t epoch = from; epoch < to; ++epoch) {
    r.ex->on_epoch_begin(epoch);
    for (int64_t s = 0; s < kStepsPerEpoch; ++s) {
      const int64_t step = epoch * kStepsPerEpoch + s;
      r.ex->on_step(step);
      torch::manual_seed(1000 + step);
      auto idx = torch::randint(0, 64, {2, 8});
      auto loss = torch::nn::functional::cross_entropy(r.model->forward(idx).view({-1, 64}),
                                                       idx.view({-1}));
      r.opt->zero_grad();
      loss.backward();
      r.opt->step();
    }
    r.ex->report("val_loss", values[static_cast<size_t>(epoch)]);
  }
}

std::vector<std::pair<double, std::vector<std::string>>> groups(TrainingRun& r) {
  std::vector<std::pair<double, std::vector<std::string>>> out;
  for (const auto& g : r.opt->param_groups()) {
    out.push_back({g.options().get_lr(), {}});
    for (const auto& t : g.params())
      for (const auto& p : r.model->named_parameters())
        if (p.value().unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) {
          out.back().second.push_back(p.key());
          break;
        }
  }
  return out;
}

TEST(MetricTriggers, StagesFireAtTheBoundaryAfterEachPlateau) {
  at::set_num_threads(1);
  TrainingRun r = start(write_rules("plateau.yaml", kRules));
  listen(r);
  EXPECT_EQ(r.ex->watched_metrics(), std::vector<std::string>{"val_loss"});
  const std::string fingerprint = r.ex->fingerprint();
  std::vector<size_t> frozen_by_epoch;
  for (int64_t e = 0; e < kEpochs; ++e) {
    train(r, e, e + 1);
    frozen_by_epoch.push_back(r.ex->frozen_names().size());
  }
  EXPECT_EQ(r.log, (std::vector<std::string>{
                       "epoch 4 metric: stage 'top' on val_loss plateau (+24)",
                       "epoch 6 metric: stage 'rest' on val_loss plateau (new group at lr ×0.5) "
                       "(+50)"}));
  EXPECT_EQ(r.ex->frozen_names().size(), 0u);
  EXPECT_EQ(r.ex->fingerprint(), fingerprint);  // the definition's, whatever fired
  // What trains: the head alone until epoch 4, the top two layers from 4, all from 6.
  EXPECT_EQ(frozen_by_epoch[3], frozen_by_epoch[0]);
  EXPECT_LT(frozen_by_epoch[4], frozen_by_epoch[3]);
  EXPECT_EQ(frozen_by_epoch[5], frozen_by_epoch[4]);
  EXPECT_EQ(frozen_by_epoch[6], 0u);
  // The groups: the optimizer's own, the top layers at its rate, the rest at half of it.
  auto g = groups(r);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_DOUBLE_EQ(g[1].first, 1e-2);
  EXPECT_DOUBLE_EQ(g[2].first, 0.5e-2);
}

TEST(MetricTriggers, NotAfterFiresBeforeAnyPlateau) {
  TrainingRun r = start(write_rules("plateau_bound.yaml", kRules));
  listen(r);
  std::vector<double> improving;
  for (int64_t e = 0; e < kEpochs; ++e) improving.push_back(1.0 - 0.1 * static_cast<double>(e));
  train(r, 0, kEpochs, improving);
  // 'top' at its bound; 'rest' never (the loss keeps improving by more than 0.05).
  EXPECT_EQ(r.log,
            std::vector<std::string>{"epoch 6 metric: stage 'top' on val_loss plateau (+24)"});
  EXPECT_FALSE(r.ex->frozen_names().empty());
}

TEST(MetricTriggers, KilledAndResumedAtAnyEpochEqualsUninterrupted) {
  at::set_num_threads(1);
  const std::string rules = write_rules("plateau_resume.yaml", kRules);
  TrainingRun whole = start(rules);
  train(whole, 0, kEpochs);
  for (int64_t kill_at = 1; kill_at < kEpochs; ++kill_at) {
    TrainingRun first = start(rules);
    train(first, 0, kill_at);
    // The checkpoint a trainer writes at the end of an epoch: weights, optimizer, executor state.
    std::stringstream weights, optimizer;
    torch::save(first.model, weights);
    torch::save(*first.opt, optimizer);
    const std::string state = first.ex->state().to_string();
    EXPECT_EQ(state.rfind("layerfreeze-state/3 ", 0), 0u) << state;

    TrainingRun second = start(rules);  // a new process
    torch::load(second.model, weights);
    second.ex->restore(ExecutorState::parse(state));
    torch::load(*second.opt, optimizer);
    train(second, kill_at, kEpochs);  // the values of the epochs after the kill only

    const std::string where = "killed after epoch " + std::to_string(kill_at - 1);
    EXPECT_EQ(whole.ex->state().to_string(), second.ex->state().to_string()) << where;
    EXPECT_EQ(whole.ex->frozen_names(), second.ex->frozen_names()) << where;
    EXPECT_EQ(groups(whole), groups(second)) << where;
    auto a = whole.model->named_parameters(), b = second.model->named_parameters();
    for (const auto& item : a)
      EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << where << ": " << item.key();
  }
}

TEST(MetricTriggers, TheRecordedHistoryGivesThePlanTheRunFollowed) {
  TrainingRun r = start(write_rules("plateau_history.yaml", kRules));
  std::string history;
  std::vector<std::vector<std::string>> frozen;
  for (int64_t e = 0; e < kEpochs; ++e) {
    train(r, e, e + 1);
    frozen.push_back(r.ex->frozen_names());
    history += std::to_string(e) + " val_loss " + std::to_string(kValLoss[e]) + "\n";
  }
  Diagnostics d;
  auto replayed = r.ex->plan().replaying(history, "history.txt", d);
  ASSERT_TRUE(replayed) << format_diagnostics(d);
  EXPECT_EQ(replayed->fingerprint(), r.ex->fingerprint());
  for (int64_t e = 0; e < kEpochs; ++e) {
    auto s = replayed->state_at({e, e * kStepsPerEpoch});
    std::vector<std::string> names;
    for (size_t i = 0; i < s.frozen.size(); ++i)
      if (s.frozen[i]) names.push_back(replayed->inventory().params()[i].name);
    EXPECT_EQ(names, frozen[static_cast<size_t>(e)]) << "epoch " << e;
  }
  // An executor bound to a replayed plan runs the strategy: nothing fires without reports.
  TrainingRun bound = start(write_rules("plateau_bound_plan.yaml", kRules));
  Executor from_replayed(*bound.model, *replayed);
  from_replayed.on_epoch_begin(5);
  EXPECT_EQ(from_replayed.frozen_names(), frozen[0]);
  // And an assumption of the same plateaus gives the same change points.
  auto assumed = r.ex->plan().assuming({"val_loss: plateaus at epochs 4, 6"}, d);
  ASSERT_TRUE(assumed) << format_diagnostics(d);
  auto a = assumed->change_points(Time{kEpochs, -1}),
       b = replayed->change_points(Time{kEpochs, -1});
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].at.epoch, b[k].at.epoch);
    EXPECT_EQ(a[k].newly_unfrozen, b[k].newly_unfrozen);
  }
}

TEST(MetricTriggers, MisuseIsAnErrorWithTheFix) {
  TrainingRun r = start(write_rules("plateau_misuse.yaml", kRules));
  r.ex->on_epoch_begin(0);
  EXPECT_EQ(code_of([&] { r.ex->report("val_los", 1.0); }), "unknown-metric");
  try {
    r.ex->report("val_los", 1.0);
  } catch (const DiagnosticError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'val_loss'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(code_of([&] { r.ex->report("val_loss", std::nan("")); }), "metric-not-finite");
  // Not strict: a NaN counts as no improvement, an unknown metric changes nothing.
  r.ex->set_strict(false);
  r.ex->report("val_loss", 1.0);
  r.ex->report("val_loss", std::nan(""));
  r.ex->report("val_loss", std::nan(""));
  r.ex->report("other", 0.0);
  r.ex->on_epoch_begin(1);
  EXPECT_NE(r.ex->state().triggers.find("f=0@1p"), std::string::npos) << r.ex->state().triggers;

  // A layerfreeze-state/2 says nothing of what fired: refused for a plan with metric stages.
  TrainingRun fresh = start(write_rules("plateau_misuse2.yaml", kRules));
  const std::string v2 = "layerfreeze-state/2 " + fresh.ex->fingerprint() + " 3 6";
  EXPECT_EQ(code_of([&] { fresh.ex->restore(ExecutorState::parse(v2)); }), "old-state");
  // A tampered trigger state: refused, the executor unchanged.
  ExecutorState s = fresh.ex->state();
  s.triggers = "b=3 f=1@2p s=0:0x1p+0:0:0";  // 'rest' before 'top'
  EXPECT_EQ(code_of([&] { fresh.ex->restore(s); }), "bad-state");
  s.triggers = "b=3 s=0:nonsense:0:0";
  EXPECT_EQ(code_of([&] { fresh.ex->restore(s); }), "bad-state");
  EXPECT_EQ(fresh.ex->state().triggers, "b=-1 s=0:none:0:0");
}

}  // namespace metric_triggers_test
}  // namespace layerfreeze
