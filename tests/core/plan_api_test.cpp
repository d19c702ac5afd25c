// The public plan API (include/layerfreeze/plan.hpp): what a trainer or its CI calls.
#include <gtest/gtest.h>

#include "api/plan_access.hpp"
#include "layerfreeze/model_source.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze {
namespace {

Inventory model(const std::string& spec) {
  Diagnostics d;
  auto inv = load_model(spec, d);
  EXPECT_TRUE(inv) << format_diagnostics(d);
  return inv ? *inv : Inventory();
}

TEST(PlanApi, TypedValuesCompileLikeTheirYamlSpelling) {
  Diagnostics d;
  auto s = Strategy::load("preset:lp_lora", d);
  ASSERT_TRUE(s) << format_diagnostics(d);
  EXPECT_EQ(s->name(), "lp_lora");
  EXPECT_EQ(s->origin(), "preset:lp_lora");
  EXPECT_EQ(s->param_names(),
            (std::vector<std::string>{"freeze_ratio", "freeze_embed", "freeze_towers"}));
  PlanOptions typed, text;
  typed.values = {{"freeze_ratio", 0.25}, {"freeze_embed", false}};
  text.sets = {"freeze_ratio=0.25", "freeze_embed=false"};
  const Inventory inv = model("builtin:llama2-7b");
  auto a = compile(*s, inv, typed, d), b = compile(*s, inv, text, d);
  ASSERT_TRUE(a && b) << format_diagnostics(d);
  EXPECT_EQ(a->fingerprint(), b->fingerprint());
  PlanState st = a->state_at({0, 0});
  EXPECT_EQ(st.frozen_tensors, 8u * 9u);  // layers 0–7 of Llama 2, 9 tensors each
  EXPECT_EQ(st.frozen_numel + st.trainable_numel, inv.total_numel());
  // An int where a float is declared is fine (the YAML rule); a string is not.
  PlanOptions bad;
  bad.values = {{"freeze_ratio", std::string("half")}, {"nope", int64_t{1}}};
  Diagnostics e;
  EXPECT_FALSE(compile(*s, inv, bad, e));
  std::string text_e = format_diagnostics(e);
  EXPECT_NE(text_e.find("[param-type]"), std::string::npos) << text_e;
  EXPECT_NE(text_e.find("[unknown-param]"), std::string::npos) << text_e;
}

TEST(PlanApi, FromYamlWithASectionAndTheSourcesForCarets) {
  Diagnostics d;
  SourceTexts texts;
  auto s = Strategy::from_yaml(
      "training:\n  freeze:\n    layerfreeze: 1\n    name: x\n    rules:\n      - freze: all\n",
      "exp.yaml", d, "training.freeze", &texts);
  EXPECT_FALSE(s);
  std::string out = format_diagnostics(d, &texts);
  EXPECT_NE(out.find("exp.yaml:6:9: error: unknown key 'freze'"), std::string::npos) << out;
  EXPECT_NE(out.find("        - freze: all\n          ^"), std::string::npos) << out;
}

TEST(PlanApi, StatesChangePointsProvenanceAndPrinters) {
  Diagnostics d;
  auto s = Strategy::load("preset:gradual_unfreeze", d);
  PlanOptions o;
  o.values = {{"total_epochs", int64_t{4}}};
  auto plan = compile(*s, model("builtin:gpt2"), o, d);
  ASSERT_TRUE(plan) << format_diagnostics(d);
  auto points = plan->change_points();
  ASSERT_EQ(points.size(), 4u);  // the start, then epochs 1, 2, 3
  EXPECT_EQ(points[2].at.epoch, 2);
  EXPECT_GT(points[2].newly_unfrozen.size(), 0u);
  EXPECT_GT(plan->state_at({3, 0}).trainable_numel, plan->state_at({1, 0}).trainable_numel);
  EXPECT_EQ(*plan->provenance("transformer.h.0.attn.c_attn.weight", {0, 0}),
            "preset:gradual_unfreeze:28:5 freeze all");
  EXPECT_FALSE(plan->provenance("no.such.weight", {0, 0}));
  EXPECT_NE(plan->text().find("plan: gradual_unfreeze (preset:gradual_unfreeze) on builtin:gpt2"),
            std::string::npos);
  EXPECT_NE(plan->markdown().find("### layerfreeze plan"), std::string::npos);
  EXPECT_NE(plan->json().find("\"format\": \"layerfreeze.plan/1\""), std::string::npos);
  EXPECT_NE(plan->explain("lm_head.weight", {1, 0})->find("lm_head.weight"), std::string::npos);
  EXPECT_FALSE(plan->explain("nope", {0, 0}));
  // diff against lp_lora on the same model
  auto lp = compile(*Strategy::load("preset:lp_lora", d), model("builtin:gpt2"), {}, d);
  ASSERT_TRUE(lp);
  EXPECT_NE(diff_text(*plan, *lp).find("epoch 0"), std::string::npos);
  Plan copy = *plan;  // cheap, shared
  EXPECT_EQ(&PlanAccess::compiled(copy), &PlanAccess::compiled(*plan));
}

}  // namespace
}  // namespace layerfreeze
