// The frozen prefix a cache could hold (docs/CACHE.md): where the boundary is at each change
// point, until when it holds, what forward compute it saves, the cache's size for a dataset, and
// what makes a prefix unfit in train mode. Built-in llama2-7b (32 layers, float16, width 4,096),
// gpt2 (tied head), resnet50 (BatchNorm, no token embedding).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "analysis/plan_summary.hpp"
#include "layerfreeze/model_source.hpp"
#include "print/inventory_printer.hpp"
#include "print/plan_printer.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace cache_boundary_test {

PlanSummary summary_of(const test::Compiled& c) {
  return summarize(*c.plan, OptimizerKind::AdamW, c.plan->default_horizon());
}

TEST(CacheBoundary, LpLoraCachesTheFrozenHalfAndSaysItsSize) {
  auto c = test::compile_preset("lp_lora", "builtin:llama2-7b");
  ASSERT_TRUE(c.plan) << c.errors();
  PlanSummary s = summary_of(c);
  ASSERT_EQ(s.stages.size(), 1u);
  const CacheBoundary& b = s.stages[0].cache;
  EXPECT_EQ(b.layers, 16);
  EXPECT_EQ(b.stops, "layer 16 trains");
  EXPECT_EQ(b.prefix_numel, 16 * 202383360LL) << "16 layers' matrices; the lookup is not counted";
  EXPECT_EQ(b.width, 4096);
  EXPECT_EQ(b.value_bytes, 2);
  EXPECT_FALSE(b.holds_until);
  EXPECT_EQ(cache_bytes(b, 10000, 2048), 10000LL * 2048 * 4096 * 2);
  // The prefix's forward leaves the step: (F - P + B + W) / 3F against (F + B + W) / 3F.
  const StageSummary& st = s.stages[0];
  EXPECT_NEAR(st.step_cost() - st.cached_step_cost(),
              static_cast<double>(b.prefix_numel) / (3.0 * static_cast<double>(st.forward_numel)),
              1e-12);
  s.cache_samples = 10000;
  s.seq_len = 2048;
  const std::string text = plan_text(s);
  EXPECT_NE(text.find("cache: the output of layer 15 (embeddings and layers 0–15 frozen; layer 16 "
                      "trains) — saves the forward through 3.2B parameters: ≈0.50× a full step "
                      "instead of ≈0.66×; holds to the horizon; 10,000 × 2,048 tokens × 4,096 × "
                      "2 B = 167.8 GB"),
            std::string::npos)
      << text;
  const std::string json = plan_json(s);
  EXPECT_NE(json.find("\"bytes\": 167772160000"), std::string::npos);
  EXPECT_NE(json.find("\"cache_dataset\""), std::string::npos);
}

TEST(CacheBoundary, GradualUnfreezingMovesTheBoundaryDownStageByStage) {
  auto c = test::compile_preset("gradual_unfreeze", "builtin:llama2-7b", {"total_epochs=5"});
  ASSERT_TRUE(c.plan) << c.errors();
  PlanSummary s = summary_of(c);
  std::vector<int32_t> layers;
  for (const auto& st : s.stages) layers.push_back(st.cache.layers);
  EXPECT_EQ(layers, (std::vector<int32_t>{32, 24, 16, 8, 0}));
  for (size_t k = 0; k + 1 < s.stages.size(); ++k) {
    ASSERT_TRUE(s.stages[k].cache.holds_until) << k;
    EXPECT_EQ(s.stages[k].cache.holds_until->epoch, static_cast<int64_t>(k + 1));
  }
  EXPECT_EQ(s.stages[1].cache.holds_until_why, "layer 16 trains");
  EXPECT_FALSE(s.stages.back().cache.holds_until);
}

TEST(CacheBoundary, NothingIsCacheableWhenTheInputSideTrains) {
  // The embeddings train (freeze_first_n leaves them trainable): the first layer's input changes.
  auto c = test::compile_preset("freeze_first_n", "builtin:llama2-7b", {"n=4"});
  ASSERT_TRUE(c.plan) << c.errors();
  PlanSummary s = summary_of(c);
  EXPECT_FALSE(s.stages[0].cache.cacheable());
  EXPECT_EQ(s.stages[0].cache.stops, "the embeddings train");
  EXPECT_EQ(plan_text(s).find("  cache: "), std::string::npos);
  EXPECT_NE(plan_json(s).find("\"cache\": null"), std::string::npos);
  // Rows of the embedding train ({tokens}): the embedding is not frozen whole.
  auto r = test::compile_text("rules:\n  - freeze: all\n  - unfreeze: {tokens: \"-4:\"}\n",
                              test::builtin("llama2-7b"));
  ASSERT_TRUE(r.plan) << r.errors();
  EXPECT_FALSE(summary_of(r).stages[0].cache.cacheable());
  // A tied head that trains is the embedding: nothing before layer 0 is frozen.
  auto g =
      test::compile_text("rules:\n  - freeze: all\n  - unfreeze: head\n", test::builtin("gpt2"));
  ASSERT_TRUE(g.plan) << g.errors();
  EXPECT_EQ(summary_of(g).stages[0].cache.stops, "the embeddings train");
}

TEST(CacheBoundary, BatchNormInThePrefixIsSaidUnlessItsPolicyKeepsItInEval) {
  const std::string rules =
      "rules:\n  - freeze: all\n  - unfreeze: {layers: \"-1:\"}\n  - "
      "unfreeze: head\n";
  auto c = test::compile_text(rules, test::builtin("resnet50"));
  ASSERT_TRUE(c.plan) << c.errors();
  PlanSummary s = summary_of(c);
  const CacheBoundary& b = s.stages[0].cache;
  EXPECT_TRUE(b.cacheable());
  ASSERT_EQ(b.train_mode_effects.size(), 1u);
  EXPECT_NE(b.train_mode_effects[0].find("BatchNorm modules"), std::string::npos);
  EXPECT_EQ(b.width, 0) << "no token embedding: the width is unknown";
  s.cache_samples = 10;
  s.seq_len = 1;
  EXPECT_NE(plan_text(s).find("size unknown"), std::string::npos);
  auto e = test::compile_text("options: {batchnorm: eval_when_frozen}\n" + rules,
                              test::builtin("resnet50"));
  ASSERT_TRUE(e.plan) << e.errors();
  EXPECT_TRUE(summary_of(e).stages[0].cache.train_mode_effects.empty());
}

TEST(CacheBoundary, FrozenPrefixEvalIsAPolicyThePlanShows) {
  const std::string rules =
      "rules:\n  - freeze: all\n  - unfreeze: {layers: \"-1:\"}\n  - unfreeze: head\n";
  auto plain = test::compile_text(rules, test::builtin("resnet50"));
  auto eval =
      test::compile_text("options: {frozen_prefix: eval}\n" + rules, test::builtin("resnet50"));
  ASSERT_TRUE(plain.plan && eval.plan) << plain.errors() << eval.errors();
  EXPECT_EQ(eval.plan->options.frozen_prefix, Options::FrozenPrefix::kEval);
  // It holds the prefix's BatchNorm in eval mode: nothing varies in train mode any more.
  EXPECT_TRUE(summary_of(eval).stages[0].cache.train_mode_effects.empty());
  const std::string text = plan_text(summary_of(eval));
  EXPECT_NE(text.find("frozen prefix in eval mode"), std::string::npos) << text;
  EXPECT_NE(text.find("options.frozen_prefix: eval holds its modules (dropout included) in eval "
                      "mode"),
            std::string::npos)
      << text;
  EXPECT_NE(plan_json(summary_of(eval)).find("\"frozen_prefix\": \"eval\""), std::string::npos);
  // A misspelt policy is an error with the words it may take.
  auto bad =
      test::compile_text("options: {frozen_prefix: evl}\n" + rules, test::builtin("resnet50"));
  EXPECT_FALSE(bad.plan);
  EXPECT_NE(bad.errors().find("did you mean 'eval'"), std::string::npos) << bad.errors();
}

TEST(CacheBoundary, ABoundaryHeldOneEpochIsFilledAndNeverRead) {
  auto c = test::compile_preset("gradual_unfreeze", "builtin:llama2-7b", {"total_epochs=5"});
  ASSERT_TRUE(c.plan) << c.errors();
  const std::string one = plan_text(summary_of(c));
  EXPECT_NE(one.find("holds until epoch 1 (layer 24 trains) — one epoch: the cache is filled in "
                     "it and never read"),
            std::string::npos)
      << one;
  // Two epochs a boundary (gpt2's 12 layers over 24 epochs): read in the second; only the start,
  // whose first layer opens at epoch 1, is held one epoch.
  auto two = test::compile_preset("gradual_unfreeze", "builtin:gpt2", {"total_epochs=25"});
  ASSERT_TRUE(two.plan) << two.errors();
  const std::string text = plan_text(summary_of(two));
  const auto first = text.find("never read");
  ASSERT_NE(first, std::string::npos) << text;
  EXPECT_EQ(text.find("never read", first + 1), std::string::npos) << text;
}

// With a sequence length the step cost counts attention's S × S products (2·S·d a token in each
// attention layer, forward; twice that backward where the gradient runs) and a head tied to the
// token embedding (V·d a token): gpt2, 12 layers, d 768, vocab 50,257, tied.
TEST(CacheBoundary, SequenceLengthAddsAttentionAndTheTiedOutputLayer) {
  auto c = test::compile_preset("lp_lora", "builtin:gpt2");
  ASSERT_TRUE(c.plan) << c.errors();
  PlanSummary s = summary_of(c);
  const StageSummary before = s.stages[0];
  EXPECT_EQ(before.extra_forward, 0);
  add_sequence_terms(*c.plan, 1024, s);
  const StageSummary& st = s.stages[0];
  const int64_t attention = 2LL * 1024 * 768, head = 50257LL * 768;
  EXPECT_EQ(st.extra_forward, 12 * attention + head);
  // lp_lora: layers 6–11 train, so the gradient runs through the attention of layers 7–11 (the
  // earliest trainable layer's own input gradient is not needed) and through the head.
  EXPECT_EQ(st.extra_backward, 5 * 2 * attention + head);
  EXPECT_EQ(st.extra_weight, 0) << "the tied embedding is frozen: no weight gradient";
  EXPECT_EQ(st.prefix_extra_forward, 6 * attention);
  EXPECT_NEAR(st.step_cost(),
              static_cast<double>(st.forward_numel + st.extra_forward + st.backward_through_numel +
                                  st.extra_backward + st.weight_grad_numel) /
                  (3.0 * static_cast<double>(st.forward_numel + st.extra_forward)),
              1e-12);
  EXPECT_LT(st.cached_step_cost(), st.step_cost());
  const std::string text = plan_text(s);
  EXPECT_NE(text.find("a token forward for attention at 1,024 tokens and the tied output layer"),
            std::string::npos)
      << text;
  EXPECT_NE(plan_json(s).find("\"extra_forward\": " + std::to_string(12 * attention + head)),
            std::string::npos);
}

// A vision-language model (olmOCR, Qwen2-VL: vision tower 'visual', connector 'visual.merger'):
// with the tower frozen and the connector training (lp_lora), the trunk has nothing cacheable but
// the tower's output is; with the connector frozen too, tower and connector are part of the
// trunk's prefix.
TEST(CacheBoundary, AFrozenVisionTowerIsCacheableAloneOrInsideThePrefix) {
  const std::string model =
      std::string(LAYERFREEZE_TEST_DATA) + "/real-checkpoints/olmocr-qwen2-vl-7b";
  auto c = test::compile_preset("lp_lora", model);
  ASSERT_TRUE(c.plan) << c.errors();
  int64_t tower = 0, connector = 0;
  for (const auto& p : c.plan->inventory->params()) {
    if (p.role == Role::kTower) tower += p.numel;
    if (p.role == Role::kConnector) connector += p.numel;
  }
  ASSERT_GT(tower, 0);
  ASSERT_GT(connector, 0);
  PlanSummary s = summary_of(c);
  const CacheBoundary& b = s.stages[0].cache;
  EXPECT_FALSE(b.cacheable());
  EXPECT_TRUE(b.tower_only());
  EXPECT_EQ(b.towers, std::vector<std::string>{"visual"});
  EXPECT_EQ(b.tower_numel, tower) << "the connector trains: not in the cache";
  EXPECT_FALSE(b.connectors_in);
  EXPECT_NEAR(s.stages[0].step_cost() - s.stages[0].cached_step_cost(),
              static_cast<double>(tower) / s.stages[0].full_cost(), 1e-12);
  s.cache_samples = 10;
  s.seq_len = 10;
  const std::string text = plan_text(s);
  EXPECT_NE(text.find("cache: the output of tower 'visual' (frozen whole; a connector trains: the "
                      "trunk has nothing cacheable) — saves the forward through 631.2M"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("size unknown (a tower's output a sample depends on its images or audio)"),
            std::string::npos);
  EXPECT_NE(plan_json(s).find("\"towers_only\": true"), std::string::npos);

  auto all =
      test::compile_text("rules:\n  - freeze: [tower, connector, embeddings, {layers: \"0:14\"}]\n",
                         *load_model(model, c.diags));
  ASSERT_TRUE(all.plan) << all.errors();
  const PlanSummary whole = summary_of(all);
  const CacheBoundary& p = whole.stages[0].cache;
  EXPECT_EQ(p.layers, 14);
  EXPECT_TRUE(p.connectors_in);
  int64_t layers = 0;
  for (const auto& q : all.plan->inventory->params())
    if (q.role == Role::kLayer && q.layer < 14) layers += q.numel;
  EXPECT_EQ(p.prefix_numel, layers + tower + connector);
  EXPECT_NE(plan_text(whole).find("(embeddings, tower 'visual', the connector and layers 0–13 "
                                  "frozen; layer 14 trains)"),
            std::string::npos)
      << plan_text(whole);
}

// Dropout has no parameters, but a checkpoint's config may state it (m2m100: dropout 0.1,
// attention_dropout 0.1): the plan then says the prefix varies in train mode — until
// frozen_prefix: eval — and a manifest written from the checkpoint carries it.
TEST(CacheBoundary, DropoutAConfigStatesIsSaid) {
  const std::string model = std::string(LAYERFREEZE_TEST_DATA) + "/real-checkpoints/m2m100-slt";
  Diagnostics d;
  auto inv = load_model(model, d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  const auto& dropout = inv->facts().config_dropout;
  ASSERT_FALSE(dropout.empty());
  for (const auto& [key, p] : dropout) {
    EXPECT_TRUE(key.find("dropout") != std::string::npos) << key;
    EXPECT_GT(p, 0);
  }
  const std::string rules = "rules:\n  - freeze: all\n  - unfreeze: head\n";
  auto c = test::compile_text(rules, *inv);
  ASSERT_TRUE(c.plan) << c.errors();
  const auto effects = summary_of(c).stages[0].cache.train_mode_effects;
  ASSERT_FALSE(effects.empty());
  EXPECT_NE(effects.back().find("the config sets dropout ("), std::string::npos) << effects.back();
  auto e = test::compile_text("options: {frozen_prefix: eval}\n" + rules, *inv);
  ASSERT_TRUE(e.plan) << e.errors();
  EXPECT_TRUE(summary_of(e).stages[0].cache.train_mode_effects.empty());
  // Through a manifest: the same dropout.
  auto back = parse_manifest(inventory_json(*inv), "m.json", d);
  ASSERT_TRUE(back) << format_diagnostics(d);
  EXPECT_EQ(back->facts().config_dropout, dropout);
  // A hostile manifest: a probability outside (0, 1) is refused.
  Diagnostics bad;
  std::string text = inventory_json(*inv);
  const auto at = text.find("\"config_dropout\": {");
  ASSERT_NE(at, std::string::npos);
  text.insert(at + std::string("\"config_dropout\": {").size(), "\"x_dropout\": 7, ");
  EXPECT_FALSE(parse_manifest(text, "m.json", bad));
  EXPECT_NE(format_diagnostics(bad).find("config_dropout"), std::string::npos);
}

}  // namespace cache_boundary_test
}  // namespace layerfreeze
