// Exact freezing inside fused expert tensors (docs/EXPERTS.md, "Masks"): frozen expert slices
// stay bit-identical under SGD with momentum and weight decay, Adam with (L2) weight decay, AdamW
// and AdamW with AMSGrad — for slices frozen from the start and slices frozen mid-run after they
// trained; the executor's masks equal the plan's; and a control shows that zeroing gradient
// slices alone (axolotl's unfrozen_parameters approach) lets "frozen" slices drift; the decay
// the executor takes over equals torch's on the trainable slices, bit for bit; the seed API's
// counts see the masks.
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include <unistd.h>

#include <fstream>
#include <functional>
#include <memory>

#include "api/plan_access.hpp"
#include "core/plan.hpp"
#include "esft/tiny_moe.hpp"
#include "layerfreeze/executor.hpp"
#include "layerfreeze/layerfreeze.hpp"
#include "torch/compat.hpp"

namespace layerfreeze {
namespace expert_masks_test {

// Experts 2 of every layer frozen from the start; experts 0 and 1 of layer 1 frozen at step 4
// (after four steps of training); everything else trains.
const char* kRules =
    "rules:\n"
    "  - freeze: {experts: [2]}\n"
    "stages:\n"
    "  - at: {step: 4}\n"
    "    rules:\n"
    "      - freeze: {experts: [0, 1], layers: [1]}\n";

struct OptimizerCase {
  const char* name;
  std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)> make;
  // Built from model->parameters() (every tensor, frozen ones too: the LibTorch habit) instead
  // of Executor::trainable_parameters().
  bool from_model = false;
};

std::vector<OptimizerCase> optimizers() {
  return {
      {"sgd_momentum_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::SGD>(
             p, torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(0.1));
       }},
      {"adam_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::Adam>(
             p, torch::optim::AdamOptions(1e-2).weight_decay(0.1));
       }},
      {"adamw",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::AdamW>(
             p, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
       }},
      {"adamw_amsgrad",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::AdamW>(
             p, torch::optim::AdamWOptions(1e-2).weight_decay(0.1).amsgrad(true));
       }},
      {"rmsprop_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::RMSprop>(
             p, torch::optim::RMSpropOptions(1e-2).weight_decay(0.1).momentum(0.5));
       }},
      // Adagrad creates its state when it is constructed (LibTorch refuses to regroup a tensor
      // with state unless the executor sets the state aside).
      {"adagrad_wd",
       [](std::vector<torch::Tensor> p) {
         return std::make_unique<torch::optim::Adagrad>(
             p, torch::optim::AdagradOptions(1e-2).weight_decay(0.1));
       }},
  };
}

// Every optimizer again, built from model->parameters().
std::vector<OptimizerCase> optimizers_from_model() {
  std::vector<OptimizerCase> out;
  for (auto c : optimizers()) {
    c.from_model = true;
    out.push_back(c);
  }
  return out;
}

torch::Tensor batch(int64_t step, int64_t vocab) {
  torch::manual_seed(1000 + step);
  return torch::randint(vocab, {24}, torch::kLong);
}

double train_step(tiny_moe::TinyMoe& m, torch::optim::Optimizer& opt, Executor* ex, int64_t step) {
  auto tokens = batch(step, m->cfg.vocab);
  compat::zero_grad_in_place(opt);
  auto logits = m->forward(tokens.slice(0, 0, 23));
  auto loss = torch::nn::functional::cross_entropy(logits, tokens.slice(0, 1, 24));
  loss.backward();
  if (ex) ex->before_optimizer_step();
  opt.step();
  if (ex) ex->after_optimizer_step();
  return loss.item<double>();
}

std::string rules_file(const std::string& name, const std::string& text) {
  // One file per process: ctest runs the cases of this file in parallel processes.
  std::string path =
      std::string(::testing::TempDir()) + "/" + name + "-" + std::to_string(::getpid()) + ".yaml";
  std::ofstream(path) << text;
  return path;
}

class ExpertMasks : public ::testing::TestWithParam<OptimizerCase> {};

TEST_P(ExpertMasks, FrozenSlicesStayBitIdentical) {
  torch::manual_seed(0);
  tiny_moe::Config cfg;
  tiny_moe::TinyMoe m(cfg);
  Executor ex(*m, rules_file("masks", kRules));
  auto opt = GetParam().make(GetParam().from_model ? m->parameters() : ex.trainable_parameters());
  ex.attach_optimizer(*opt);
  const Inventory& inv = ex.inventory();
  const auto& plan = PlanAccess::compiled(ex.plan());
  ASSERT_EQ(plan.slices.params.size(), 6u);  // gate_up_proj and down_proj of 3 layers

  auto params = ex.parameters();
  auto tensor_of = [&](const std::string& name) { return params[*inv.find(name)]; };
  const std::string up1 = "model.layers.1.mlp.experts.gate_up_proj";
  torch::Tensor start = tensor_of(up1).detach().clone();
  torch::Tensor at_freeze;
  for (int64_t step = 0; step < 10; ++step) {
    ex.on_step(step);
    // The executor's masks are the plan's, at every step.
    Selection s = plan.state_at({0, step});
    for (uint32_t i : plan.slices.params)
      EXPECT_EQ(ex.frozen_experts(i),
                plan.partial(s, i) ? plan.slices.indices_in(i, s.slices) : std::vector<int32_t>{})
          << inv.params()[i].name << " at step " << step;
    if (step == 4) at_freeze = tensor_of(up1).detach().clone();
    train_step(m, *opt, &ex, step);
  }
  torch::Tensor now = tensor_of(up1).detach();
  // Expert 2: frozen from the start, never moved.
  EXPECT_TRUE(torch::equal(now[2], start[2]));
  // Experts 0 and 1: trained for 4 steps (moved), then frozen: bit-identical since.
  EXPECT_FALSE(torch::equal(at_freeze[0], start[0]));
  EXPECT_TRUE(torch::equal(now[0], at_freeze[0]));
  EXPECT_TRUE(torch::equal(now[1], at_freeze[1]));
  // The rest trained all along.
  EXPECT_FALSE(torch::equal(now[3], at_freeze[3]));
  // Every fused tensor's expert 2 in every layer, and the down projections too.
  for (int l = 0; l < 3; ++l)
    for (const char* t : {"gate_up_proj", "down_proj"}) {
      auto name = "model.layers." + std::to_string(l) + ".mlp.experts." + t;
      EXPECT_TRUE(tensor_of(name).requires_grad()) << name;
    }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ExpertMasks, ::testing::ValuesIn(optimizers()),
                         [](const auto& info) { return std::string(info.param.name); });
INSTANTIATE_TEST_SUITE_P(FromModelParameters, ExpertMasks,
                         ::testing::ValuesIn(optimizers_from_model()),
                         [](const auto& info) { return std::string(info.param.name); });

// The decay the executor takes over is torch's own, to the bit, on the trainable slices. A loss
// that is a sum of per-element terms makes every element's gradient depend on that element only,
// so the masked run's trainable slices must equal a run of the plain optimizer with no masks at
// all (its weight decay applied by torch) — and the frozen slices must equal their start.
class ExpertMaskDecay : public ::testing::TestWithParam<OptimizerCase> {};

double separable_step(const std::vector<torch::Tensor>& params,
                      const std::vector<torch::Tensor>& targets, torch::optim::Optimizer& opt,
                      Executor* ex) {
  compat::zero_grad_in_place(opt);
  auto loss = torch::zeros({});
  for (size_t i = 0; i < params.size(); ++i)
    loss = loss + (params[i] - targets[i]).pow(2).sum() + 0.1 * params[i].pow(4).sum();
  loss.backward();
  if (ex) ex->before_optimizer_step();
  opt.step();
  if (ex) ex->after_optimizer_step();
  return loss.item<double>();
}

TEST_P(ExpertMaskDecay, TrainableSlicesReceiveExactlyTorchsDecay) {
  torch::manual_seed(0);
  tiny_moe::TinyMoe masked(tiny_moe::Config{});
  tiny_moe::TinyMoe plain(tiny_moe::Config{});
  {
    torch::NoGradGuard g;
    auto a = masked->parameters(), b = plain->parameters();
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  Executor ex(*masked, rules_file("decay", "rules:\n  - freeze: {experts: [2, 5]}\n"));
  auto mopt = GetParam().make(ex.trainable_parameters());
  ex.attach_optimizer(*mopt);
  auto popt = GetParam().make(plain->parameters());
  // Both runs see the same tensors in the same (inventory) order.
  std::vector<torch::Tensor> mp = ex.parameters(), pp;
  const Inventory& inv = ex.inventory();
  auto plain_named = plain->named_parameters(true);
  for (const auto& p : inv.params()) pp.push_back(plain_named[p.name]);
  std::vector<torch::Tensor> targets, start;
  for (const auto& t : mp) {
    targets.push_back(torch::randn_like(t));
    start.push_back(t.detach().clone());
  }
  for (int64_t step = 0; step < 6; ++step) {
    ex.on_step(step);
    separable_step(mp, targets, *mopt, &ex);
    separable_step(pp, targets, *popt, nullptr);
  }
  int checked = 0;
  for (size_t i = 0; i < mp.size(); ++i) {
    auto frozen = ex.frozen_experts(i);
    if (frozen.empty()) {
      EXPECT_TRUE(torch::equal(mp[i], pp[i])) << inv.params()[i].name;
      continue;
    }
    EXPECT_EQ(frozen, (std::vector<int32_t>{2, 5})) << inv.params()[i].name;
    for (int64_t e = 0; e < mp[i].size(0); ++e) {
      if (e == 2 || e == 5) {
        EXPECT_TRUE(torch::equal(mp[i][e], start[i][e])) << inv.params()[i].name << " expert " << e;
      } else {
        EXPECT_FALSE(torch::equal(mp[i][e], start[i][e]))
            << inv.params()[i].name << " expert " << e;
        EXPECT_TRUE(torch::equal(mp[i][e], pp[i][e])) << inv.params()[i].name << " expert " << e;
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 6);  // gate_up_proj and down_proj of 3 layers
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ExpertMaskDecay, ::testing::ValuesIn(optimizers()),
                         [](const auto& info) { return std::string(info.param.name); });

// The seed API's counts see the executor's masks: the frozen experts of a fused tensor count as
// frozen parameters whose gradient and optimizer state are not kept, as a per-expert layout's
// frozen tensors.
TEST(ExpertMasksApi, SeedCountsMaskedElementsAsFrozenAndSaved) {
  for (bool fused : {true, false}) {
    torch::manual_seed(0);
    tiny_moe::Config cfg;
    cfg.fused = fused;
    tiny_moe::TinyMoe m(cfg);
    const int64_t expert_numel = 3 * cfg.hidden * cfg.intermediate;  // per expert and layer
    const int64_t frozen = cfg.layers * expert_numel;                // expert 2 of 3 layers
    {
      Executor ex(*m, rules_file("seed_counts", "rules:\n  - freeze: {experts: [2]}\n"));
      EXPECT_EQ(ex.frozen_numel(), frozen);
      auto s = get_memory_savings_estimate(*m, OptimizerKind::AdamW);
      EXPECT_EQ(s.frozen_params, frozen) << "fused " << fused;
      EXPECT_EQ(s.trainable_params, ex.trainable_numel()) << "fused " << fused;
      EXPECT_EQ(s.masked_frozen_params, fused ? frozen : 0);
      EXPECT_EQ(s.gradient_saved_bytes, frozen * 4);
      EXPECT_EQ(s.optimizer_saved_bytes, 2 * frozen * 4);
      EXPECT_EQ(get_trainable_params(*m), ex.trainable_numel());
      // The seed's layer table sees the masks too: every layer trains 7 of its 8 experts.
      const std::string table = layer_status(*m);
      if (fused)
        EXPECT_NE(table.find("PARTIAL (experts 7/8 train"), std::string::npos) << table;
      else
        EXPECT_NE(table.find("PARTIAL"), std::string::npos) << table;
    }
    // The masks gone with the executor: the fused layers train whole again.
    if (fused) EXPECT_EQ(layer_status(*m).find("PARTIAL"), std::string::npos) << layer_status(*m);
    // The executor gone, its masks go with it: the tensors train whole.
    auto s = get_memory_savings_estimate(*m, OptimizerKind::AdamW);
    EXPECT_EQ(s.masked_frozen_params, 0);
    EXPECT_EQ(s.frozen_params, fused ? 0 : frozen);
  }
}

// The control: a gradient hook alone (zeroing the frozen experts' gradient rows), as axolotl's
// unfrozen_parameters does. Slices that trained before keep moving on their momentum, and
// decoupled weight decay shrinks every slice.
TEST(ExpertMasksControl, GradientHookAloneLetsFrozenSlicesDrift) {
  for (bool momentum_only : {true, false}) {
    torch::manual_seed(0);
    tiny_moe::TinyMoe m(tiny_moe::Config{});
    std::vector<torch::Tensor> params = m->parameters();
    std::unique_ptr<torch::optim::Optimizer> opt;
    if (momentum_only)
      opt =
          std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.05).momentum(0.9));
    else
      opt = std::make_unique<torch::optim::AdamW>(
          params, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
    torch::Tensor up = m->layers[1]->mlp->experts->gate_up_proj;
    auto frozen = std::make_shared<torch::Tensor>();
    up.register_hook([frozen](const torch::Tensor& g) {
      return frozen->defined() ? g.masked_fill(*frozen, 0) : g;
    });
    torch::Tensor at_freeze;
    for (int64_t step = 0; step < 10; ++step) {
      if (step == 4) {
        *frozen = torch::zeros({up.size(0), 1, 1}, torch::kBool);
        (*frozen)[0] = true;
        at_freeze = up.detach().clone();
      }
      train_step(m, *opt, nullptr, step);
    }
    EXPECT_FALSE(torch::equal(up.detach()[0], at_freeze[0]))
        << (momentum_only ? "momentum" : "AdamW decay") << " should move a hook-only slice";
  }
}

// A step that skips before_optimizer_step (the optimizer never sees the trainable slices'
// gradient) or after_optimizer_step (the model never receives their update) is an error at the
// next step, and at the next epoch.
TEST(ExpertMasksApi, MissingBeforeOrAfterStepIsAnError) {
  for (int missing : {0, 1, 2}) {
    torch::manual_seed(0);
    tiny_moe::TinyMoe m(tiny_moe::Config{});
    Executor ex(*m, rules_file("masks_missing", kRules));
    torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
    ex.attach_optimizer(opt);
    ex.on_epoch_begin(0);
    ex.on_step(0);
    auto tokens = batch(0, 96);
    auto loss = torch::nn::functional::cross_entropy(m->forward(tokens.slice(0, 0, 23)),
                                                     tokens.slice(0, 1, 24));
    loss.backward();
    if (missing != 0) ex.before_optimizer_step();
    opt.step();
    if (missing != 1) ex.after_optimizer_step();
    if (missing == 2) {
      EXPECT_NO_THROW(ex.on_step(1));
      continue;
    }
    try {
      ex.on_step(1);
      ADD_FAILURE() << "no error for missing " << missing;
    } catch (const DiagnosticError& e) {
      EXPECT_NE(
          std::string(e.what()).find(missing == 0 ? "missing-before-step" : "missing-after-step"),
          std::string::npos)
          << e.what();
    }
    EXPECT_THROW(ex.on_epoch_begin(1), DiagnosticError);
  }
}

TEST(ExpertMasksApi, PerExpertLayoutFreezesWholeTensors) {
  torch::manual_seed(0);
  tiny_moe::Config cfg;
  cfg.fused = false;
  tiny_moe::TinyMoe m(cfg);
  Executor ex(*m, rules_file("per_expert", kRules));
  EXPECT_TRUE(PlanAccess::compiled(ex.plan()).slices.empty());
  torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
  ex.attach_optimizer(opt);
  const Inventory& inv = ex.inventory();
  auto w = ex.parameters()[*inv.find("model.layers.1.mlp.experts.0.w1.weight")];
  torch::Tensor at_freeze;
  for (int64_t step = 0; step < 8; ++step) {
    ex.on_step(step);
    if (step == 4) {
      at_freeze = w.detach().clone();
      EXPECT_FALSE(w.requires_grad());
    }
    train_step(m, opt, &ex, step);
  }
  EXPECT_TRUE(torch::equal(w.detach(), at_freeze));
  EXPECT_TRUE(ex.is_frozen(*inv.find("model.layers.0.mlp.experts.2.w2.weight")));
}

}  // namespace expert_masks_test
}  // namespace layerfreeze
