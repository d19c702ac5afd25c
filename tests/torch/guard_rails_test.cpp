// A trainer author's mistakes, made the way a LibTorch user makes them (issue 27): each either
// works — the optimizer ends holding what the plan trains at the rates it promises — or throws a
// DiagnosticError that names the fix. Real training steps, both LibTorch versions.
#include <gtest/gtest.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <map>
#include <set>
#include <string>

#include "layerfreeze/executor.hpp"
#include "layerfreeze/model_source.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace guard_rails_test {

using test::code_of;
using test::GPT2LMHeadModel;
using test::train_step;
using test::write_rules;

// Which group holds each tensor (by TensorImpl), and that none is held twice.
std::map<const void*, size_t> group_of(const torch::optim::Optimizer& opt) {
  std::map<const void*, size_t> out;
  for (size_t g = 0; g < opt.param_groups().size(); ++g)
    for (const auto& t : opt.param_groups()[g].params()) {
      EXPECT_TRUE(out.emplace(t.unsafeGetTensorImpl(), g).second) << "a tensor held twice";
    }
  return out;
}

// The learning rate each named parameter trains at.
std::map<std::string, double> rates(torch::nn::Module& m, const torch::optim::Optimizer& opt) {
  auto groups = group_of(opt);
  std::map<std::string, double> out;
  for (const auto& p : m.named_parameters()) {
    auto g = groups.find(p.value().unsafeGetTensorImpl());
    if (g != groups.end()) out[p.key()] = opt.param_groups()[g->second].options().get_lr();
  }
  return out;
}

const char* kThawAt1 =
    "rules:\n  - freeze: {layers: \"0:4\"}\n"
    "stages:\n  - at: {epoch: 1}\n    rules: [{unfreeze: {layers: \"2:4\"}}]\n";

TEST(GuardRails, AnOptimizerAttachedLateHoldsWhatTrains) {
  torch::manual_seed(1);
  GPT2LMHeadModel m;
  Executor ex(*m, write_rules("late.yaml", kThawAt1));
  torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
  ex.on_epoch_begin(0);
  ex.on_epoch_begin(1);  // layers 2 and 3 thaw before the optimizer is attached
  ex.attach_optimizer(opt);
  auto groups = group_of(opt);
  for (const auto& t : ex.trainable_parameters())
    EXPECT_TRUE(groups.count(t.unsafeGetTensorImpl())) << "a trainable tensor not held";
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_DOUBLE_EQ(opt.param_groups()[1].options().get_lr(), 1e-2);
  auto w = m->named_parameters()["transformer.h.2.mlp.c_fc.weight"];
  auto before = w.detach().clone();
  train_step(m, opt);
  EXPECT_FALSE(torch::equal(w, before)) << "a thawed layer did not train";
}

// An optimizer built the LibTorch way, from every parameter: the stage's rate still reaches the
// tensors it thaws (they move to a group of their own), and nothing frozen moves before.
TEST(GuardRails, AnOptimizerOfEveryParameterGetsTheStagesRate) {
  torch::manual_seed(2);
  GPT2LMHeadModel m(64, 16, 16, 6, /*tied=*/false);
  const std::string rules = write_rules("scale.yaml",
                                        "rules:\n  - freeze: {layers: \"0:4\"}\n"
                                        "stages:\n  - at: {epoch: 1}\n    lr_scale: 0.3\n    "
                                        "rules: [{unfreeze: {layers: \"2:4\"}}]\n");
  Executor ex(*m, rules);
  torch::optim::SGD opt(m->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  ex.attach_optimizer(opt);
  ex.on_epoch_begin(0);
  FrozenGuard guard(*m);
  train_step(m, opt);
  EXPECT_TRUE(guard.changed().empty()) << guard.changed().front();
  ex.on_epoch_begin(1);
  auto r = rates(*m, opt);
  EXPECT_DOUBLE_EQ(r["transformer.h.2.mlp.c_fc.weight"], 0.1 * 0.3);
  EXPECT_DOUBLE_EQ(r["transformer.h.3.attn.c_attn.weight"], 0.1 * 0.3);
  EXPECT_DOUBLE_EQ(r["transformer.h.5.mlp.c_fc.weight"], 0.1);
  EXPECT_DOUBLE_EQ(r["transformer.h.0.mlp.c_fc.weight"], 0.1);  // still frozen, never stepped
  EXPECT_EQ(r.size(), m->parameters().size());                  // each tensor in exactly one group
}

// Lightning's BackboneFinetuning(unfreeze_backbone_at_epoch=0, backbone_initial_ratio_lr=0.2)
// gives two groups at epoch 0 — the head at 0.1, the backbone at 0.02 — and so does the same
// strategy: the stage fires before the optimizer exists, the optimizer is built from what
// trains, and attaching it moves the backbone to the stage's rate.
TEST(GuardRails, AStageAtEpochZeroGetsItsRate) {
  torch::manual_seed(3);
  for (bool from_model : {false, true}) {
    GPT2LMHeadModel m(64, 16, 16, 6, /*tied=*/false);
    const std::string rules = write_rules(
        "backbone0.yaml",
        "rules:\n  - freeze: {layers: \"0:6\"}\n"
        "stages:\n  - at: {epoch: 0}\n    lr_scale: 0.2\n    rules: [{unfreeze: {layers: "
        "\"0:6\"}}]\n");
    Executor ex(*m, rules);
    torch::optim::AdamW opt(from_model ? m->parameters() : ex.trainable_parameters(),
                            torch::optim::AdamWOptions(0.1));
    ex.attach_optimizer(opt);
    ex.on_epoch_begin(0);
    std::set<double> lrs;
    for (const auto& g : opt.param_groups())
      if (!g.params().empty()) lrs.insert(g.options().get_lr());
    EXPECT_EQ(lrs, (std::set<double>{0.1 * 0.2, 0.1})) << "from_model " << from_model;
    auto r = rates(*m, opt);
    EXPECT_DOUBLE_EQ(r["transformer.h.0.attn.c_attn.weight"], 0.1 * 0.2);
    EXPECT_DOUBLE_EQ(r["lm_head.weight"], 0.1);
    EXPECT_DOUBLE_EQ(r["transformer.wte.weight"], 0.1);
  }
}

// Adagrad creates its state when constructed: what joins later gets it too, and a tensor whose
// state was dropped while frozen gets it back when it thaws (Adagrad refuses to step without).
TEST(GuardRails, AdagradTrainsWhatThawsLater) {
  torch::manual_seed(4);
  GPT2LMHeadModel m;
  Executor ex(*m, write_rules("adagrad.yaml", kThawAt1));
  torch::optim::Adagrad opt(ex.trainable_parameters(),
                            torch::optim::AdagradOptions(0.1).weight_decay(0.01));
  ex.attach_optimizer(opt);
  for (int e = 0; e < 3; ++e) {
    ex.on_epoch_begin(e);
    EXPECT_NO_THROW(train_step(m, opt)) << "epoch " << e;
  }
  ex.seek(0);  // layers 2, 3 freeze again: their state is dropped
  ex.seek(1);  // and thaw
  EXPECT_NO_THROW(train_step(m, opt));
}

TEST(GuardRails, TimeThatMovesTheWrongWayIsRefusedWithTheFix) {
  GPT2LMHeadModel m;
  PlanOptions po;
  po.values = {{"total_epochs", int64_t{4}}};
  Executor ex(*m, "preset:gradual_unfreeze", po);
  EXPECT_EQ(code_of([&] { ex.on_epoch_begin(-1); }), "time-negative");
  ex.on_epoch_begin(2);
  EXPECT_EQ(code_of([&] { ex.on_epoch_begin(1); }), "time-backwards");
  EXPECT_EQ(code_of([&] { ex.on_epoch_begin(4); }), "past-total-epochs");
  ex.on_step(10);
  EXPECT_EQ(code_of([&] { ex.on_step(3); }), "time-backwards");
  EXPECT_EQ(code_of([&] { ex.on_step(-2); }), "time-negative");
  // seek is the way back, on purpose.
  EXPECT_EQ(code_of([&] { ex.seek(1, 3); }), "");
  EXPECT_EQ(ex.state().epoch, 1);
  // The message says what to do.
  try {
    ex.on_epoch_begin(0);
    ADD_FAILURE() << "no exception";
  } catch (const DiagnosticError& e) {
    EXPECT_NE(std::string(e.what()).find("call seek(0, step)"), std::string::npos) << e.what();
  }
  // Strict off: times are taken as given.
  ex.set_strict(false);
  EXPECT_EQ(code_of([&] { ex.on_epoch_begin(0); }), "");
  EXPECT_EQ(code_of([&] { ex.on_epoch_begin(7); }), "");
}

// steps_per_epoch set, on_step called, on_epoch_begin forgotten: the epoch trigger would never
// fire, and the first step of epoch 1 says so.
TEST(GuardRails, AForgottenEpochBeginIsNamed) {
  GPT2LMHeadModel m;
  PlanOptions po;
  po.values = {{"total_epochs", int64_t{3}}};
  po.steps_per_epoch = 4;
  const std::string rules = "preset:gradual_unfreeze";
  Executor ex(*m, rules, po);
  for (int64_t s = 0; s < 4; ++s) EXPECT_EQ(code_of([&] { ex.on_step(s); }), "") << s;
  EXPECT_EQ(code_of([&] { ex.on_step(4); }), "epoch-not-begun");
  ex.on_epoch_begin(1);
  EXPECT_EQ(code_of([&] { ex.on_step(4); }), "");
  // A per-epoch step counter (0 again in epoch 1) is not the global step.
  GPT2LMHeadModel m2;
  Executor ex2(*m2, rules, po);
  ex2.on_epoch_begin(0);
  ex2.on_step(3);
  ex2.on_epoch_begin(1);
  EXPECT_EQ(code_of([&] { ex2.on_step(0); }), "time-backwards");
  // Without steps_per_epoch: steps while an epoch trigger waits and no epoch was ever begun.
  GPT2LMHeadModel m3;
  Executor ex3(*m3, write_rules("thaw1.yaml", kThawAt1));
  EXPECT_EQ(code_of([&] { ex3.on_step(0); }), "epoch-not-begun");
  ex3.on_epoch_begin(0);
  EXPECT_EQ(code_of([&] { ex3.on_step(0); }), "");
}

// CI plans from the manifest the trainer writes; the trainer's executor runs the plan CI
// checked: the same fingerprint, with a rule that selects by module type (which torch::save and
// a checkpoint's header do not carry).
TEST(GuardRails, TheCiPlanIsTheTrainersPlan) {
  GPT2LMHeadModel m;
  const std::string rules = write_rules(
      "norms.yaml", "rules:\n  - freeze: all\n  - unfreeze: {module_type: '.*Norm.*'}\n");
  Executor ex(*m, rules);
  const std::string manifest = testing::TempDir() + "gpt2_manifest.json";
  write_manifest(*m, manifest);
  Diagnostics d;
  auto model = load_model(manifest, d);
  ASSERT_TRUE(model) << format_diagnostics(d);
  auto strategy = Strategy::load(rules, d);
  ASSERT_TRUE(strategy) << format_diagnostics(d);
  auto ci = compile(*strategy, *model, {}, d);
  ASSERT_TRUE(ci) << format_diagnostics(d);
  EXPECT_EQ(ci->fingerprint(), ex.fingerprint());
  EXPECT_EQ(ci->inventory().fingerprint(), ex.inventory().fingerprint());
  EXPECT_EQ(ci->state_at({0, 0}).trainable_tensors, ex.trainable_parameters().size());
  EXPECT_GT(ex.trainable_parameters().size(), 0u);
  // inventory_of is what the executor compiled against.
  EXPECT_EQ(inventory_of(*m).fingerprint(), ex.inventory().fingerprint());
  // A file that cannot be written is a DiagnosticError naming it.
  EXPECT_EQ(code_of([&] { write_manifest(*m, testing::TempDir()); }), "manifest-write");
}

}  // namespace guard_rails_test
}  // namespace layerfreeze
