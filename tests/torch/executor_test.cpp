// The executor in real LibTorch training loops: frozen means frozen under SGD (momentum, weight
// decay), Adam and AdamW, also for parameters frozen after they had gradients; BatchNorm policy;
// optimizer state and param groups; seek equals stepping; checkpoints.
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <fstream>
#include <map>

#include "layerfreeze/executor.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace {

using test::GPT2LMHeadModel;
using test::train_step;
using test::write_rules;

std::map<std::string, torch::Tensor> snapshot_frozen(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters())
    if (!p.value().requires_grad()) out[p.key()] = p.value().detach().clone();
  return out;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& kind,
                                                        const std::vector<torch::Tensor>& params) {
  if (kind == "sgd")
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(0.1));
  if (kind == "adam")
    return std::make_unique<torch::optim::Adam>(params,
                                                torch::optim::AdamOptions(1e-2).weight_decay(0.1));
  return std::make_unique<torch::optim::AdamW>(params,
                                               torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
}

const char* kFreezeAtEpoch1 =
    "stages:\n"
    "  - at: {epoch: 1}\n"
    "    rules:\n"
    "      - freeze: [embeddings, {layers: \"0:3\"}]\n";

TEST(Executor, FrozenMeansFrozenForEveryOptimizer) {
  for (const std::string kind : {"sgd", "adam", "adamw"}) {
    torch::manual_seed(3);
    GPT2LMHeadModel m;
    Executor ex(*m, write_rules("freeze_at_1.yaml", kFreezeAtEpoch1));
    auto opt = make_optimizer(kind, ex.trainable_parameters());
    ex.attach_optimizer(*opt);
    ex.on_epoch_begin(0);
    for (int s = 0; s < 3; ++s) train_step(m, *opt);  // momentum and moments build up
    EXPECT_TRUE(ex.on_epoch_begin(1));
    auto frozen = snapshot_frozen(*m);
    ASSERT_EQ(frozen.size(), 3u * 12u + 3u);  // wte (= lm_head, both names), wpe, layers 0-2
    FrozenGuard guard(*m);
    auto trainable_before =
        m->transformer->h[5]->as<test::Block>()->mlp->c_fc->weight.detach().clone();
    for (int s = 0; s < 5; ++s) train_step(m, *opt);
    for (const auto& [name, before] : frozen)
      EXPECT_TRUE(torch::equal(m->named_parameters()[name], before))
          << kind << ": " << name << " moved";
    EXPECT_TRUE(guard.changed().empty()) << kind;
    EXPECT_FALSE(
        torch::equal(m->transformer->h[5]->as<test::Block>()->mlp->c_fc->weight, trainable_before))
        << kind;
  }
}

// The control: what the executor prevents. requires_grad_(false) alone, with gradients zeroed in
// place (what `zero_grad()` does in LibTorch 1.13, and `zero_grad(false)` in 2.x), keeps the
// gradient defined, so momentum and weight decay keep moving the "frozen" weight. Holds for every
// LibTorch version.
TEST(Executor, WithoutDroppingTheGradientAFrozenWeightMoves) {
  torch::manual_seed(3);
  GPT2LMHeadModel m;
  torch::optim::SGD opt(trainable_parameters(*m),
                        torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(0.1));
  for (int s = 0; s < 3; ++s) train_step(m, opt, /*zero_in_place=*/true);
  auto w = m->transformer->wpe->weight;
  w.requires_grad_(false);
  auto before = w.detach().clone();
  FrozenGuard guard(*m);
  for (int s = 0; s < 3; ++s) train_step(m, opt, /*zero_in_place=*/true);
  EXPECT_FALSE(torch::equal(w, before));
  EXPECT_EQ(guard.changed(), std::vector<std::string>{"transformer.wpe.weight"});
}

// Its 2.x counterpart: there `zero_grad()` sets gradients to undefined by default, so the same
// code with the default call leaves the weight in place — but the optimizer still holds the
// tensor's momentum buffer (its memory is not saved) and the next `zero_grad(false)` anywhere in
// a trainer brings the drift back. With 1.13's `zero_grad()` (in place) the weight moves, as above.
TEST(Executor, WithTheDefaultZeroGradAFrozenWeightMovesOnlyInLibTorch1) {
  torch::manual_seed(3);
  GPT2LMHeadModel m;
  torch::optim::SGD opt(trainable_parameters(*m),
                        torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(0.1));
  for (int s = 0; s < 3; ++s) train_step(m, opt);
  auto w = m->transformer->wpe->weight;
  w.requires_grad_(false);
  auto before = w.detach().clone();
  for (int s = 0; s < 3; ++s) train_step(m, opt);
  EXPECT_EQ(torch::equal(w, before), compat::kZeroGradSetsToNone) << compat::kTorchVersion;
  EXPECT_TRUE(compat::has_optimizer_state(opt, w)) << "the momentum buffer stays allocated";
}

TEST(Executor, OptimizerStateIsDroppedAndUnfrozenParametersJoinAsAGroup) {
  torch::manual_seed(4);
  GPT2LMHeadModel m;
  std::string rules =
      write_rules("groups.yaml",
                  "options: {unfreeze_lr_scale: 0.1}\n"
                  "rules:\n  - freeze: {layers: \"0:2\"}\n"
                  "stages:\n"
                  "  - at: {epoch: 1}\n    rules: [{freeze: {layers: 5}}]\n"
                  "  - at: {epoch: 2}\n    rules: [{unfreeze: {layers: \"0:2\"}}]\n");
  Executor ex(*m, rules);
  torch::optim::Adam opt(ex.trainable_parameters(), torch::optim::AdamOptions(1e-2));
  ex.attach_optimizer(opt);
  train_step(m, opt);
  size_t with_all = opt.state().size();
  EXPECT_EQ(with_all, ex.trainable_parameters().size());
  ex.on_epoch_begin(1);
  EXPECT_EQ(opt.state().size(), with_all - 12u);  // layer 5's Adam moments are freed
  ex.on_epoch_begin(2);
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_EQ(opt.param_groups()[1].params().size(), 24u);
  EXPECT_DOUBLE_EQ(opt.param_groups()[1].options().get_lr(), 1e-3);
  train_step(m, opt);
  EXPECT_TRUE(m->transformer->h[0]->as<test::Block>()->ln_1->weight.grad().defined());
}

// A stage's `lr` / `lr_scale` (what the finetuning-scheduler's per-phase `lr` imports to): the
// tensors it unfreezes join a group at that learning rate; seeking lands in the same groups.
TEST(Executor, AStageLearningRateSetsTheGroupOfWhatItUnfreezes) {
  torch::manual_seed(4);
  std::string rules = write_rules(
      "stage_lr.yaml",
      "rules:\n  - freeze: {layers: \"0:4\"}\n"
      "stages:\n"
      "  - at: {epoch: 1}\n    lr: 0.003\n    rules: [{unfreeze: {layers: \"2:4\"}}]\n"
      "  - at: {epoch: 2}\n    lr_scale: 0.5\n    rules: [{unfreeze: {layers: \"0:2\"}}]\n");
  GPT2LMHeadModel a, b;
  Executor ea(*a, rules), eb(*b, rules);
  torch::optim::Adam oa(ea.trainable_parameters(), torch::optim::AdamOptions(1e-2));
  torch::optim::Adam ob(eb.trainable_parameters(), torch::optim::AdamOptions(1e-2));
  ea.attach_optimizer(oa);
  eb.attach_optimizer(ob);
  ea.on_epoch_begin(0);
  ea.on_epoch_begin(1);
  ASSERT_EQ(oa.param_groups().size(), 2u);
  EXPECT_DOUBLE_EQ(oa.param_groups()[1].options().get_lr(), 0.003);
  EXPECT_EQ(oa.param_groups()[1].params().size(), 24u);
  ea.on_epoch_begin(2);
  ASSERT_EQ(oa.param_groups().size(), 3u);
  EXPECT_DOUBLE_EQ(oa.param_groups()[2].options().get_lr(), 0.005);
  EXPECT_EQ(oa.param_groups()[2].params().size(), 24u);
  eb.seek(2);
  ASSERT_EQ(ob.param_groups().size(), 3u);
  EXPECT_DOUBLE_EQ(ob.param_groups()[1].options().get_lr(), 0.003);
  EXPECT_DOUBLE_EQ(ob.param_groups()[2].options().get_lr(), 0.005);
}

TEST(Executor, SeekGivesTheSameStateAndGroupsAsSteppingThroughEveryEpoch) {
  PlanOptions po;
  po.sets = {"total_epochs=5"};
  torch::manual_seed(5);
  GPT2LMHeadModel a, b;
  Executor ea(*a, "preset:gradual_unfreeze", po), eb(*b, "preset:gradual_unfreeze", po);
  torch::optim::AdamW oa(ea.trainable_parameters(), torch::optim::AdamWOptions(1e-3));
  torch::optim::AdamW ob(eb.trainable_parameters(), torch::optim::AdamWOptions(1e-3));
  ea.attach_optimizer(oa);
  eb.attach_optimizer(ob);
  for (int e = 0; e <= 3; ++e) ea.on_epoch_begin(e);
  eb.seek(3);
  EXPECT_EQ(ea.frozen_names(), eb.frozen_names());
  ASSERT_EQ(oa.param_groups().size(), ob.param_groups().size());
  auto names_of = [](torch::nn::Module& m, const torch::optim::OptimizerParamGroup& g) {
    std::vector<std::string> out;
    for (const auto& t : g.params())
      for (const auto& p : m.named_parameters())
        if (p.value().unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) {
          out.push_back(p.key());
          break;
        }
    return out;
  };
  for (size_t g = 0; g < oa.param_groups().size(); ++g)
    EXPECT_EQ(names_of(*a, oa.param_groups()[g]), names_of(*b, ob.param_groups()[g]))
        << "group " << g;
  for (const auto& p : a->named_parameters())
    EXPECT_EQ(p.value().requires_grad(), b->named_parameters()[p.key()].requires_grad()) << p.key();
}

// Seeking backward keeps the param groups added on the way forward (documented in
// executor.hpp): what is frozen again stays in its group but has no gradient and no optimizer
// state, so no step moves it; going forward again adds nothing twice.
TEST(Executor, SeekingBackKeepsGroupsAndFrozenWeightsStayPut) {
  PlanOptions po;
  po.sets = {"total_epochs=5"};
  torch::manual_seed(7);
  GPT2LMHeadModel m;
  Executor ex(*m, "preset:gradual_unfreeze", po);
  torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-3));
  ex.attach_optimizer(opt);
  for (int e = 0; e <= 4; ++e) {
    ex.on_epoch_begin(e);
    train_step(m, opt);
  }
  const size_t groups = opt.param_groups().size();
  ASSERT_GT(groups, 1u);
  ex.seek(0);
  EXPECT_EQ(opt.param_groups().size(), groups);
  FrozenGuard guard(*m);
  for (int i = 0; i < 3; ++i) train_step(m, opt);
  EXPECT_TRUE(guard.changed().empty()) << guard.changed().front();
  for (const auto& p : m->named_parameters())
    if (!p.value().requires_grad()) {
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
      EXPECT_FALSE(compat::has_optimizer_state(opt, p.value())) << p.key();
    }
  for (int e = 0; e <= 4; ++e) ex.on_epoch_begin(e);
  EXPECT_EQ(opt.param_groups().size(), groups);
}

TEST(Executor, CheckpointRestoreAndFingerprintMismatch) {
  PlanOptions po;
  po.sets = {"total_epochs=5"};
  GPT2LMHeadModel a, b;
  Executor ea(*a, "preset:gradual_unfreeze", po);
  ea.seek(3);
  ExecutorState saved = ea.state();
  Executor eb(*b, "preset:gradual_unfreeze", po);
  eb.restore(saved);
  EXPECT_EQ(ea.frozen_names(), eb.frozen_names());
  PlanOptions other;
  other.sets = {"total_epochs=6"};
  GPT2LMHeadModel c;
  Executor ec(*c, "preset:gradual_unfreeze", other);
  EXPECT_THROW(ec.restore(saved), DiagnosticError);
  ExecutorState parsed = ExecutorState::parse(saved.to_string());
  EXPECT_EQ(parsed.fingerprint, saved.fingerprint);
  EXPECT_EQ(parsed.epoch, 3);
  EXPECT_THROW(ExecutorState::parse("layerfreeze-state/1 abc x 0"), DiagnosticError);
  // A state of the old format: its fingerprint did not cover learning rates, so it is refused
  // with what to do, not compared.
  try {
    ExecutorState::parse("layerfreeze-state/1 9720aa9ba2096f1d 3 0");
    ADD_FAILURE() << "an old state was accepted";
  } catch (const DiagnosticError& e) {
    const std::string what = format_diagnostics(e.diagnostics());
    EXPECT_NE(what.find("[old-state]"), std::string::npos) << what;
    EXPECT_NE(what.find("executor.seek(3, 0)"), std::string::npos) << what;
  }
}

// The same frozen states under another learning rate are another plan: restore refuses.
TEST(Executor, RestoreRefusesACheckpointWrittenUnderOtherLearningRates) {
  PlanOptions a_opts, b_opts;
  a_opts.sets = {"lr_decay=2.6"};
  b_opts.sets = {"lr_decay=5.0"};
  GPT2LMHeadModel a, b, c;
  Executor ea(*a, "preset:ulmfit", a_opts);
  ea.seek(2);
  Executor eb(*b, "preset:ulmfit", b_opts);
  eb.seek(2);
  EXPECT_EQ(ea.frozen_names(), eb.frozen_names());  // only the learning rates differ
  EXPECT_NE(ea.fingerprint(), eb.fingerprint());
  EXPECT_THROW(eb.restore(ea.state()), DiagnosticError);
  Executor same(*c, "preset:ulmfit", a_opts);
  EXPECT_NO_THROW(same.restore(ea.state()));
  EXPECT_EQ(same.frozen_names(), ea.frozen_names());
}

// Nothing silent: a dead selector reaches a trainer that never reads warnings() — on stderr,
// once per process by default, or through PlanOptions::on_warning.
TEST(Executor, ADeadSelectorIsReportedOnceOrToTheHandler) {
  const std::string rules =
      write_rules("dead.yaml", "rules:\n  - freeze: {regex: 'encoder\\.nothing\\..*'}\n");
  GPT2LMHeadModel a, b, c;
  testing::internal::CaptureStderr();
  Executor ea(*a, rules);
  Executor eb(*b, rules);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(ea.warnings().size(), 1u);
  size_t n = 0;
  for (size_t at = err.find("[no-match]"); at != std::string::npos;
       at = err.find("[no-match]", at + 1))
    ++n;
  EXPECT_EQ(n, 1u) << err;
  EXPECT_NE(err.find("selects no parameter"), std::string::npos) << err;
  PlanOptions o;
  std::vector<std::string> seen;
  o.on_warning = [&seen](const Diagnostic& w) { seen.push_back(w.code); };
  testing::internal::CaptureStderr();
  Executor ec(*c, rules, o);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(seen, std::vector<std::string>{"no-match"});
}

TEST(Executor, RefusesAnOptimizerThatHoldsATiedTensorTwice) {
  GPT2LMHeadModel m;
  Executor ex(*m, write_rules("none.yaml", "rules: []\n"));
  torch::optim::SGD twice(m->parameters(),
                          torch::optim::SGDOptions(0.1));  // wte and lm_head: one tensor
  try {
    ex.attach_optimizer(twice);
    ADD_FAILURE() << "no exception";
  } catch (const DiagnosticError& e) {
    EXPECT_NE(
        std::string(e.what()).find("holds 'transformer.wte.weight' (also 'lm_head.weight') twice"),
        std::string::npos)
        << e.what();
  }
  torch::optim::SGD once(ex.trainable_parameters(), torch::optim::SGDOptions(0.1));
  EXPECT_NO_THROW(ex.attach_optimizer(once));
  EXPECT_EQ(ex.trainable_parameters().size(), m->parameters().size() - 1);
}

TEST(Executor, NoChangeIsCheapAndReportsFalse) {
  PlanOptions po;
  po.sets = {"total_epochs=5"};
  GPT2LMHeadModel m;
  Executor ex(*m, "preset:gradual_unfreeze", po);
  EXPECT_FALSE(ex.on_epoch_begin(0));
  for (int s = 1; s < 100; ++s) EXPECT_FALSE(ex.on_step(s));
  EXPECT_TRUE(ex.on_epoch_begin(1));
  EXPECT_FALSE(ex.on_epoch_begin(1));
}

TEST(Executor, InvalidRulesLeaveTheModelAsItWas) {
  GPT2LMHeadModel m;
  m->transformer->wpe->weight.requires_grad_(false);
  try {
    Executor ex(*m, write_rules("bad.yaml", "rules:\n  - freeze: {layers: {first: 9}}\n"));
    ADD_FAILURE() << "no exception";
  } catch (const DiagnosticError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "first: 9 is out of range: the GPT2LMHeadModel module has 6 layers"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(m->transformer->wpe->weight.requires_grad());
  EXPECT_TRUE(m->transformer->wte->weight.requires_grad());
}

TEST(Executor, FrozenBatchNormStaysInEvalAfterTrain) {
  torch::manual_seed(6);
  test::ResNet net;
  std::string rules = write_rules("bn.yaml",
                                  "options: {batchnorm: eval_when_frozen}\n"
                                  "rules:\n  - freeze: [embeddings, {layers: 0}]\n");
  net->train();
  Executor ex(*net, rules);
  torch::optim::SGD opt(ex.trainable_parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  ex.attach_optimizer(opt);
  auto stem_mean = net->bn1->running_mean.clone();
  auto l1_mean = net->layer1->named_buffers()["0.bn1.running_mean"].clone();
  auto l2_mean = net->layer2->named_buffers()["0.bn1.running_mean"].clone();
  for (int s = 0; s < 3; ++s) {
    net->train();  // a trainer does this every epoch; it undoes a submodule's eval()
    ex.on_step(s);
    auto loss = net->forward(torch::randn({4, 3, 8, 8})).pow(2).mean();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  EXPECT_TRUE(torch::equal(net->bn1->running_mean, stem_mean));
  EXPECT_TRUE(torch::equal(net->layer1->named_buffers()["0.bn1.running_mean"], l1_mean));
  EXPECT_FALSE(torch::equal(net->layer2->named_buffers()["0.bn1.running_mean"], l2_mean));
  EXPECT_FALSE(net->bn1->is_training());
  EXPECT_TRUE(net->layer2->is_training());
}

}  // namespace
}  // namespace layerfreeze

namespace layerfreeze {
namespace {

// A module LibTorch refuses to apply a plan to: an integer parameter cannot require a gradient.
struct WithCounterImpl : torch::nn::Module {
  WithCounterImpl() {
    a = register_module("a", torch::nn::Linear(4, 4));
    counter =
        register_parameter("counter", torch::zeros({1}, torch::kLong), /*requires_grad=*/false);
    b = register_module("b", torch::nn::Linear(4, 4));
  }
  torch::nn::Linear a{nullptr}, b{nullptr};
  torch::Tensor counter;
};
TORCH_MODULE(WithCounter);

TEST(Executor, AFailedApplicationLeavesTheModuleAsItWas) {
  WithCounter m;
  m->a->weight.requires_grad_(false);
  m->b->weight.mutable_grad() = torch::ones({4, 4});
  try {
    Executor ex(*m, write_rules("all_trainable.yaml", "rules: []\n"));
    ADD_FAILURE() << "no exception";
  } catch (const DiagnosticError& e) {
    EXPECT_NE(std::string(e.what()).find("the module was left as it was"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(m->a->weight.requires_grad());  // restored, although it came before the failure
  EXPECT_TRUE(m->a->bias.requires_grad());
  EXPECT_TRUE(m->b->weight.grad().defined());
  // Freezing the integer tensor in the rules is the fix.
  Executor ok(*m, write_rules("freeze_counter.yaml", "rules:\n  - freeze: {regex: counter}\n"));
  EXPECT_TRUE(m->a->weight.requires_grad());
}

}  // namespace
}  // namespace layerfreeze
