// The seed API on a GPT-2-shaped torch::nn::Module with a tied head: counts, percentages, layer
// count and schedules against docs/API.md, and memory estimates against what a real AdamW step
// allocates.
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <sstream>

#include "layerfreeze/layerfreeze.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace {

using test::GPT2LMHeadModel;

// Per layer of the d=16 test model: ln_1 (32) + c_attn (16*48+48) + c_proj (16*16+16) + ln_2 (32)
// + c_fc (16*64+64) + c_proj (64*16+16).
constexpr int64_t kLayer = 32 + 816 + 272 + 32 + 1088 + 1040;
constexpr int64_t kWte = 64 * 16, kWpe = 16 * 16, kLnF = 32;
constexpr int64_t kTotal = kWte + kWpe + 6 * kLayer + kLnF;

int64_t frozen_in_layer(GPT2LMHeadModel& m, int layer) {
  int64_t n = 0;
  for (const auto& p : m->transformer->h[layer]->parameters())
    if (!p.requires_grad()) n += p.numel();
  return n;
}

TEST(SeedApi, CountsAndComposition) {
  torch::manual_seed(0);
  GPT2LMHeadModel m;
  EXPECT_EQ(get_num_layers(*m), 6);
  EXPECT_EQ(get_trainable_params(*m), kTotal);  // the tied head counts once
  EXPECT_EQ(freeze_first_n_layers(*m, 3), 3 * kLayer);
  EXPECT_EQ(frozen_in_layer(m, 2), kLayer);
  EXPECT_EQ(frozen_in_layer(m, 3), 0);
  EXPECT_EQ(freeze_embeddings(*m), kWte + kWpe);  // composes: layers 0-2 stay frozen
  EXPECT_EQ(frozen_in_layer(m, 0), kLayer);
  EXPECT_FALSE(m->lm_head->weight.requires_grad());  // one tensor with wte
  EXPECT_EQ(get_trainable_params(*m), kTotal - 3 * kLayer - kWte - kWpe);
  EXPECT_NEAR(get_frozen_percentage(*m), 100.0 * (3 * kLayer + kWte + kWpe) / kTotal, 1e-9);
  EXPECT_EQ(unfreeze_model(*m), kTotal);
  EXPECT_EQ(get_trainable_params(*m), kTotal);
  EXPECT_EQ(freeze_last_n_layers(*m, 2), 2 * kLayer);
  EXPECT_EQ(frozen_in_layer(m, 5), kLayer);
  unfreeze_model(*m);
  EXPECT_EQ(freeze_except_last_n(*m, 2), kTotal - 2 * kLayer);  // head and embeddings included
  EXPECT_FALSE(m->transformer->ln_f->weight.requires_grad());
  EXPECT_EQ(frozen_in_layer(m, 4), 0);
  unfreeze_model(*m);
  EXPECT_EQ(freeze_model(*m), kTotal);
  EXPECT_DOUBLE_EQ(get_frozen_percentage(*m), 100.0);
}

TEST(SeedApi, LpLoraAndFreezeByName) {
  GPT2LMHeadModel m;
  EXPECT_EQ(setup_lp_lora_style(*m, 0.5, true), 3 * kLayer + kWte + kWpe);
  unfreeze_model(*m);
  EXPECT_EQ(setup_lp_lora_style(*m, 0.34, false), 2 * kLayer);  // floor(0.34 * 6) = 2
  unfreeze_model(*m);
  EXPECT_EQ(freeze_by_name(*m, std::vector<std::string>{".*attn.*"}), 6 * (816 + 272));
  unfreeze_model(*m);
  EXPECT_EQ(freeze_by_name(*m, ".*ATTN.*", false), 6 * (816 + 272));
  unfreeze_model(*m);
  EXPECT_EQ(freeze_by_name(*m, "attn"), 0);                 // full match: nothing, no throw
  EXPECT_EQ(freeze_by_name(*m, "lm_head\\.weight"), kWte);  // an alias selects the tied tensor
}

// The seed API throws layerfreeze's one error type (a DiagnosticError with a code), its text
// written for a C++ caller: the layer count, and no command-line flag.
TEST(SeedApi, InvalidArgumentsNameTheLayerCount) {
  GPT2LMHeadModel m;
  auto expect_throw = [&](auto f) {
    try {
      f();
      ADD_FAILURE() << "no exception";
    } catch (const DiagnosticError& e) {
      EXPECT_NE(std::string(e.what()).find("6 layers"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("--set"), std::string::npos) << e.what();
      EXPECT_FALSE(e.diagnostics().items().empty());
    }
  };
  expect_throw([&] { freeze_first_n_layers(*m, 7); });
  expect_throw([&] { freeze_first_n_layers(*m, -1); });
  expect_throw([&] { freeze_last_n_layers(*m, 8); });
  expect_throw([&] { freeze_except_last_n(*m, 9); });
  expect_throw([&] { setup_lp_lora_style(*m, 1.5); });
  expect_throw([&] { setup_lp_lora_style(*m, -0.1); });
  expect_throw([&] { GradualUnfreezer(*m, 0); });
  expect_throw([&] { estimate_training_time(*m, 100, 0, 1); });
  EXPECT_EQ(get_trainable_params(*m), kTotal);  // nothing half-applied
}

TEST(SeedApi, LayerNamesStatusAndSummary) {
  GPT2LMHeadModel m;
  auto names = get_layer_names(*m);
  ASSERT_EQ(names.size(), 2u + 6u * 6u + 1u + 1u);
  EXPECT_EQ(names[0], "transformer.wte");
  EXPECT_EQ(names[2], "transformer.h.0.ln_1");
  EXPECT_EQ(names[3], "transformer.h.0.attn.c_attn");
  EXPECT_EQ(names.back(), "lm_head");  // the tied alias counts
  auto params = get_layer_names(*m, true);
  EXPECT_EQ(params.size(), 2u + 6u * 12u + 2u);  // canonical names only
  EXPECT_EQ(params[0], "transformer.wte.weight");
  freeze_first_n_layers(*m, 3);
  std::ostringstream out;
  print_layer_status(*m, false, out);
  EXPECT_EQ(out.str(), layer_status(*m));
  EXPECT_EQ(out.str(),
            "========================================\n"
            "LAYER STATUS\n"
            "========================================\n"
            "Layer 0-2:  FROZEN  (9.8K params)\n"
            "Layer 3-5:  ACTIVE  (9.8K params)\n"
            "----------------------------------------\n"
            "Embeddings: ACTIVE  (1.3K params)\n"
            "Head:       ACTIVE  (1.1K params)\n"
            "========================================\n");
  std::string summary = model_summary(*m, 3);
  EXPECT_NE(summary.find("║  Model: GPT2LMHeadModel"), std::string::npos) << summary;
  EXPECT_NE(summary.find("Total Parameters: 20,992"), std::string::npos) << summary;
  EXPECT_NE(summary.find("transformer.h.0"), std::string::npos) << summary;
  EXPECT_NE(summary.find("3,280 │ ✗"), std::string::npos) << summary;
  EXPECT_NE(summary.find("3,280 │ ✓"), std::string::npos) << summary;
  std::ostringstream printed;
  print_model_summary(*m, 3, printed);
  EXPECT_EQ(printed.str(), summary);
}

TEST(SeedApi, TrainingTimeEstimate) {
  GPT2LMHeadModel m;
  auto e = estimate_training_time(*m, 50000, 16, 3);
  EXPECT_EQ(e.steps_per_epoch, 3125);
  EXPECT_EQ(e.total_steps, 9375);
  EXPECT_EQ(e.formatted, "1h 18m 7s");
  EXPECT_EQ(estimate_training_time(*m, 90, 1, 1).formatted, "45s");
  EXPECT_EQ(estimate_training_time(*m, 370, 1, 1).formatted, "3m 5s");
  EXPECT_EQ(estimate_training_time(*m, 7200, 1, 1).formatted, "1h 0m 0s");
}

TEST(SeedApi, GradualUnfreezerSchedule) {
  GPT2LMHeadModel m;
  std::ostringstream log;
  GradualUnfreezer u(*m, 4, std::nullopt, true, true, log);
  // Construction: everything but the head; the tied wte = lm_head follows the embeddings.
  for (int l = 0; l < 6; ++l) EXPECT_EQ(frozen_in_layer(m, l), kLayer);
  EXPECT_TRUE(m->transformer->ln_f->weight.requires_grad());
  EXPECT_FALSE(m->lm_head->weight.requires_grad());
  for (int e : {0, 1, 2, 3, 1, 3, 3, 0}) {  // idempotent, and it may jump back (resume)
    u.step(e);
    int k = (6 * e + 2) / 3;  // ceil(L * e / (T - 1))
    for (int l = 0; l < 6; ++l)
      EXPECT_EQ(frozen_in_layer(m, l) == 0, l >= 6 - k) << "epoch " << e << " layer " << l;
    EXPECT_FALSE(m->transformer->wpe->weight.requires_grad());
  }
  EXPECT_NE(log.str().find("Epoch 1: unfroze layers 4-5"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("'lm_head.weight' is the same tensor as 'transformer.wte.weight'; it "
                           "follows the embeddings"),
            std::string::npos)
      << log.str();
  GPT2LMHeadModel m2;
  GradualUnfreezer with_emb(*m2, 4, 2, true, false);
  with_emb.step(1);
  EXPECT_FALSE(m2->transformer->wpe->weight.requires_grad());
  with_emb.step(2);
  EXPECT_TRUE(m2->transformer->wpe->weight.requires_grad());
}

TEST(SeedApi, GradualUnfreezerOnPlateaus) {
  // One more layer at each plateau of val_loss (patience 1), four epochs apart at the latest.
  GPT2LMHeadModel m;
  std::ostringstream log;
  PlateauSchedule s;
  s.patience = 1;
  s.max_epochs_per_layer = 4;
  GradualUnfreezer u(*m, s, true, true, log);
  for (int l = 0; l < 6; ++l) EXPECT_EQ(frozen_in_layer(m, l), kLayer);
  EXPECT_TRUE(m->transformer->ln_f->weight.requires_grad());
  const std::vector<double> val_loss = {1.0, 0.9, 0.95, 0.5, 0.6, 0.4, 0.3, 0.2};
  std::vector<int> open;
  for (int e = 0; e < 8; ++e) {
    u.step(e);
    int n = 0;
    for (int l = 0; l < 6; ++l) n += frozen_in_layer(m, l) == 0;
    open.push_back(n);
    u.report("val_loss", val_loss[static_cast<size_t>(e)]);
  }
  // Plateaus after epochs 2 and 4 open layers 5 and 4 at epochs 3 and 5; then it improves.
  EXPECT_EQ(open, (std::vector<int>{0, 0, 0, 1, 1, 2, 2, 2}));
  EXPECT_NE(log.str().find("Epoch 3: unfroze layer 5"), std::string::npos) << log.str();
  // And without a plateau, the slowest pace: a layer at epoch 4 after the start.
  GPT2LMHeadModel m2;
  GradualUnfreezer slow(*m2, s, true, false);
  for (int e = 0; e < 5; ++e) slow.step(e);
  EXPECT_EQ(frozen_in_layer(m2, 5), 0);
  EXPECT_EQ(frozen_in_layer(m2, 4), kLayer);
  // Misuse.
  EXPECT_THROW(u.report("val_acc", 1.0), DiagnosticError);
  PlateauSchedule bad;
  bad.patience = 0;
  GPT2LMHeadModel m3;
  EXPECT_THROW(GradualUnfreezer(*m3, bad), DiagnosticError);
  bad = PlateauSchedule{};
  bad.metric = "val loss";
  EXPECT_THROW(GradualUnfreezer(*m3, bad), DiagnosticError);
}

// What one real training step allocates for gradients and AdamW / SGD-momentum state.
int64_t step_bytes(GPT2LMHeadModel& m, torch::optim::Optimizer& opt) {
  test::train_step(m, opt);
  int64_t bytes = 0;
  for (const auto& t : trainable_parameters(*m))
    if (t.grad().defined()) bytes += t.grad().nbytes();
  for (const auto& [key, state] : opt.state()) {
    if (auto* a = dynamic_cast<torch::optim::AdamWParamState*>(state.get())) {
      bytes += a->exp_avg().nbytes() + a->exp_avg_sq().nbytes();
      if (a->max_exp_avg_sq().defined()) bytes += a->max_exp_avg_sq().nbytes();
    } else if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(state.get())) {
      bytes += s->momentum_buffer().nbytes();
    }
  }
  return bytes;
}

TEST(SeedApi, MemorySavingsEqualWhatARealStepAllocates) {
  torch::manual_seed(1);
  for (auto kind : {OptimizerKind::AdamW, OptimizerKind::SGDMomentum}) {
    GPT2LMHeadModel full, part;
    auto make = [&](GPT2LMHeadModel& m) -> std::unique_ptr<torch::optim::Optimizer> {
      if (kind == OptimizerKind::AdamW)
        return std::make_unique<torch::optim::AdamW>(trainable_parameters(*m),
                                                     torch::optim::AdamWOptions(1e-3));
      return std::make_unique<torch::optim::SGD>(trainable_parameters(*m),
                                                 torch::optim::SGDOptions(1e-2).momentum(0.9));
    };
    auto opt_full = make(full);
    int64_t all = step_bytes(full, *opt_full);
    setup_lp_lora_style(*part, 0.5, true);
    auto opt_part = make(part);
    int64_t some = step_bytes(part, *opt_part);
    MemorySavings s = get_memory_savings_estimate(*part, kind);
    EXPECT_EQ(s.gradient_saved_bytes + s.optimizer_saved_bytes, all - some);
    EXPECT_EQ(s.frozen_params, 3 * kLayer + kWte + kWpe);
    EXPECT_EQ(s.trainable_params, kTotal - s.frozen_params);
    EXPECT_DOUBLE_EQ(s.total_saved_gb, (s.gradient_saved_bytes + s.optimizer_saved_bytes) / 1e9);
  }
}

}  // namespace
}  // namespace layerfreeze
