// The compiler and the plan: every preset's semantics (docs/API.md, docs/RULES.md), selectors
// against real architectures, time (stages, progressive, periodic), parameters, extends, warnings.
#include <filesystem>
#include <fstream>
#include <set>

#include "api/plan_access.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

using test::compile_preset;
using test::compile_text;
using test::frozen_names;
using test::frozen_numel;

std::set<int32_t> frozen_layers(const CompiledPlan& p, Time t = {0, 0}) {
  std::set<int32_t> out;
  Bitset f = p.frozen_at(t);
  for (const auto& l : p.inventory->layers) {
    bool all = true;
    for (uint32_t q : l.params) all = all && f.test(q);
    if (all) out.insert(static_cast<int32_t>(&l - p.inventory->layers.data()));
  }
  return out;
}

bool is_frozen(const CompiledPlan& p, const std::string& name, Time t = {0, 0}) {
  return p.frozen_at(t).test(*p.inventory->find(name));
}

TEST(Presets, LpLoraOnLlama2Freezes16LayersAndEmbeddings) {
  auto c = compile_preset("lp_lora", "builtin:llama2-7b");
  ASSERT_TRUE(c.plan) << c.errors();
  auto names = frozen_names(*c.plan);
  EXPECT_EQ(names.size(), 1u + 16u * 9u);
  EXPECT_EQ(names[0], "model.embed_tokens.weight");
  for (const auto& n : names) {
    if (n == "model.embed_tokens.weight") continue;
    int layer = std::stoi(n.substr(std::string("model.layers.").size()));
    EXPECT_LT(layer, 16) << n;
  }
  EXPECT_EQ(frozen_numel(*c.plan), 131072000 + 16LL * 202383360);
  EXPECT_EQ(c.plan->stages.size(), 0u);
}

TEST(Presets, LpLoraRatioFloorsAndEmbedFlag) {
  auto c = compile_preset("lp_lora", "builtin:gpt2", {"freeze_ratio=0.3", "freeze_embed=false"});
  ASSERT_TRUE(c.plan) << c.errors();
  EXPECT_EQ(frozen_layers(*c.plan), (std::set<int32_t>{0, 1, 2}));  // floor(0.3 * 12) = 3
  EXPECT_FALSE(is_frozen(*c.plan, "transformer.wte.weight"));
}

TEST(Presets, FreezeFirstNOutOfRangeNamesTheLayerCount) {
  auto c = compile_preset("freeze_first_n", "builtin:llama2-7b", {"n=40"});
  EXPECT_FALSE(c.plan);
  ASSERT_TRUE(c.diags.has_errors());
  EXPECT_EQ(c.diags.items()[0].message,
            "first: 40 is out of range: builtin:llama2-7b has 32 layers (model.layers.0–31)");
  auto neg = compile_preset("freeze_first_n", "builtin:gpt2", {"n=-1"});
  EXPECT_FALSE(neg.plan);
  EXPECT_EQ(neg.diags.items()[0].message,
            "first: -1 is out of range: builtin:gpt2 has 12 layers (transformer.h.0–11)");
  auto missing = compile_preset("freeze_first_n", "builtin:gpt2");
  EXPECT_FALSE(missing.plan);
  EXPECT_EQ(missing.diags.items()[0].message,
            "parameter 'n' (int) is required: pass --set n=VALUE (the command line) or "
            "PlanOptions::values {\"n\", …} (C++)");
}

TEST(Presets, FreezeLastAndExceptLast) {
  auto last = compile_preset("freeze_last_n", "builtin:gpt2", {"n=2"});
  ASSERT_TRUE(last.plan) << last.errors();
  EXPECT_EQ(frozen_layers(*last.plan), (std::set<int32_t>{10, 11}));
  EXPECT_FALSE(is_frozen(*last.plan, "transformer.ln_f.weight"));
  auto except = compile_preset("freeze_except_last_n", "builtin:gpt2", {"n=4"});
  ASSERT_TRUE(except.plan) << except.errors();
  EXPECT_EQ(frozen_layers(*except.plan).size(), 8u);
  EXPECT_TRUE(is_frozen(*except.plan, "transformer.ln_f.weight"));  // head included
  EXPECT_TRUE(is_frozen(*except.plan, "transformer.wpe.weight"));
  EXPECT_FALSE(is_frozen(*except.plan, "transformer.h.8.attn.c_attn.weight"));
}

TEST(Presets, FreezeByNameFullMatchCaseAndAliases) {
  auto c = compile_preset("freeze_by_name", "builtin:gpt2", {"patterns=['.*attn.*']"});
  ASSERT_TRUE(c.plan) << c.errors();
  EXPECT_EQ(frozen_names(*c.plan).size(), 12u * 4u);
  auto partial =
      compile_preset("freeze_by_name", "builtin:gpt2", {"patterns=attn"});  // full match: nothing
  ASSERT_TRUE(partial.plan);
  EXPECT_TRUE(frozen_names(*partial.plan).empty());
  ASSERT_EQ(partial.plan->warnings.size(), 1u);
  EXPECT_EQ(partial.plan->warnings[0].code, "no-match");
  auto insensitive = compile_preset("freeze_by_name", "builtin:bert-base",
                                    {"patterns=['.*LAYERNORM.*']", "case_sensitive=false"});
  ASSERT_TRUE(insensitive.plan);
  EXPECT_EQ(frozen_names(*insensitive.plan).size(), 2u + 12u * 4u);
  auto alias = compile_preset("freeze_by_name", "builtin:gpt2", {"patterns=['lm_head\\..*']"});
  ASSERT_TRUE(alias.plan);
  EXPECT_EQ(frozen_names(*alias.plan), std::vector<std::string>{"transformer.wte.weight"});
}

TEST(Presets, FreezeEmbeddingsOnFeaturesModelWarnsAndStrictErrors) {
  Inventory inv = test::names_inventory(
      {"features.0.0.weight", "features.1.0.weight", "classifier.1.weight"}, "mobilenet");
  auto c = compile_text("rules:\n  - freeze: embeddings\n", inv);
  ASSERT_TRUE(c.plan);
  ASSERT_EQ(c.plan->warnings.size(), 1u);
  EXPECT_EQ(c.plan->warnings[0].message, "'freeze embeddings' selects no parameter of mobilenet");
  EXPECT_EQ(c.plan->warnings[0].notes[0],
            "torchvision's features.N models have no embeddings: every features.N is a layer");
  auto strict = compile_text("rules:\n  - freeze: embeddings\n", inv, {}, std::nullopt, true);
  EXPECT_FALSE(strict.plan);
}

TEST(Presets, GradualUnfreezeScheduleOnGpt2) {
  auto c = compile_preset("gradual_unfreeze", "builtin:gpt2", {"total_epochs=10"});
  ASSERT_TRUE(c.plan) << c.errors();
  const CompiledPlan& p = *c.plan;
  const int L = 12;
  for (int e = 0; e < 10; ++e) {
    int k = (L * e + 8) / 9;  // ceil(L * e / (T - 1))
    std::set<int32_t> want;
    for (int l = 0; l < L - k; ++l) want.insert(l);
    EXPECT_EQ(frozen_layers(p, {e, 0}), want) << "epoch " << e;
    EXPECT_FALSE(is_frozen(p, "transformer.ln_f.weight", {e, 0}));
    EXPECT_TRUE(is_frozen(p, "transformer.wpe.weight", {e, 0}));
    EXPECT_TRUE(is_frozen(p, "lm_head.weight", {e, 0}));  // tied: follows the embeddings
  }
  EXPECT_EQ(frozen_layers(p, {4, 0}).size(), 6u);  // about half at epoch index 4
  EXPECT_TRUE(frozen_layers(p, {9, 0}).empty());
  bool tied_warning = false;
  for (const auto& w : p.warnings)
    tied_warning = tied_warning || (w.code == "tied-conflict" &&
                                    w.message.find("'transformer.wte.weight' = 'lm_head.weight'") !=
                                        std::string::npos);
  EXPECT_TRUE(tied_warning);
}

TEST(Presets, GradualUnfreezeOptions) {
  auto one = compile_preset("gradual_unfreeze", "builtin:gpt2", {"total_epochs=1"});
  ASSERT_TRUE(one.plan) << one.errors();
  EXPECT_TRUE(frozen_layers(*one.plan, {0, 0}).empty());
  auto emb = compile_preset("gradual_unfreeze", "builtin:gpt2",
                            {"total_epochs=4", "unfreeze_embeddings_at=2"});
  ASSERT_TRUE(emb.plan);
  EXPECT_TRUE(is_frozen(*emb.plan, "transformer.wpe.weight", {1, 0}));
  EXPECT_FALSE(is_frozen(*emb.plan, "transformer.wpe.weight", {2, 0}));
  EXPECT_FALSE(is_frozen(*emb.plan, "transformer.wpe.weight", {7, 0}));
  auto never = compile_preset("gradual_unfreeze", "builtin:gpt2",
                              {"total_epochs=4", "freeze_embeddings=false"});
  ASSERT_TRUE(never.plan);
  EXPECT_FALSE(is_frozen(*never.plan, "transformer.wpe.weight", {0, 0}));
  // T5: encoder.final_layer_norm opens with the encoder's last block (layer 5).
  auto t5 = compile_preset("gradual_unfreeze", "builtin:t5-small", {"total_epochs=13"});
  ASSERT_TRUE(t5.plan);
  for (int e = 0; e < 13; ++e) {
    bool layer5 = frozen_layers(*t5.plan, {e, 0}).count(5) > 0;
    EXPECT_EQ(is_frozen(*t5.plan, "encoder.final_layer_norm.weight", {e, 0}), layer5) << e;
  }
}

TEST(Presets, UlmfitOpensHeadFirstEmbeddingsLast) {
  auto c = compile_preset("ulmfit", "builtin:bert-base");
  ASSERT_TRUE(c.plan) << c.errors();
  const CompiledPlan& p = *c.plan;
  EXPECT_FALSE(is_frozen(p, "pooler.dense.weight", {0, 0}));
  EXPECT_EQ(frozen_layers(p, {0, 0}).size(), 12u);
  EXPECT_EQ(frozen_layers(p, {1, 0}).size(), 11u);
  EXPECT_TRUE(is_frozen(p, "embeddings.word_embeddings.weight", {12, 0}));
  EXPECT_FALSE(is_frozen(p, "embeddings.word_embeddings.weight", {13, 0}));
  EXPECT_DOUBLE_EQ(p.lr_scale(*p.inventory->find("pooler.dense.weight")), 1.0);
  EXPECT_NEAR(p.lr_scale(*p.inventory->find("encoder.layer.11.output.dense.weight")), 1 / 2.6,
              1e-12);
}

TEST(Presets, BitfitAndNormTuning) {
  auto bit = compile_preset("bitfit", "builtin:bert-base");
  ASSERT_TRUE(bit.plan);
  Bitset f = bit.plan->frozen_at({0, 0});
  for (size_t i = 0; i < f.size(); ++i)
    EXPECT_EQ(f.test(i), bit.plan->inventory->params()[i].leaf() != "bias");
  auto none = compile_preset("bitfit", "builtin:llama2-7b");
  ASSERT_TRUE(none.plan);
  EXPECT_EQ(none.plan->warnings.size(), 1u);  // Llama has no biases
  auto norm = compile_preset("norm_tuning", "builtin:llama2-7b");
  ASSERT_TRUE(norm.plan);
  EXPECT_EQ(norm.plan->inventory->params().size() - frozen_names(*norm.plan).size(), 32u * 2u + 1u);
  // Without module types (a safetensors header), names still find the norms.
  Inventory bare = test::with_facts(test::builtin("gpt2"), [](FactsBuilder& b) {
    for (auto& p : b.annotations()) p.module_type.clear();
  });
  auto by_name = compile_text("extends: preset:norm_tuning\n", bare);
  ASSERT_TRUE(by_name.plan) << by_name.errors();
  EXPECT_EQ(by_name.plan->inventory->params().size() - frozen_names(*by_name.plan).size(),
            12u * 4u + 2u);
}

TEST(Presets, LisaIsDeterministicPerPeriod) {
  auto c = compile_preset("lisa", "builtin:llama2-7b",
                          {"active_layers=3", "interval_steps=10", "seed=42"});
  ASSERT_TRUE(c.plan) << c.errors();
  const CompiledPlan& p = *c.plan;
  std::set<std::set<int32_t>> draws;
  for (int64_t period = 0; period < 20; ++period) {
    Bitset a = p.frozen_at({0, period * 10});
    EXPECT_EQ(a, p.frozen_at({0, period * 10 + 9}));
    auto frozen = frozen_layers(p, {0, period * 10});
    EXPECT_EQ(frozen.size(), 29u);
    EXPECT_FALSE(is_frozen(p, "model.embed_tokens.weight", {0, period * 10}));
    EXPECT_FALSE(is_frozen(p, "lm_head.weight", {0, period * 10}));
    draws.insert(frozen);
  }
  EXPECT_GT(draws.size(), 10u);
  auto again = compile_preset("lisa", "builtin:llama2-7b",
                              {"active_layers=3", "interval_steps=10", "seed=42"});
  EXPECT_EQ(again.plan->frozen_at({0, 55}), p.frozen_at({0, 55}));
  EXPECT_EQ(again.plan->fingerprint(), p.fingerprint());
  auto other_seed = compile_preset("lisa", "builtin:llama2-7b",
                                   {"active_layers=3", "interval_steps=10", "seed=43"});
  EXPECT_NE(other_seed.plan->fingerprint(), p.fingerprint());
  auto too_many = compile_preset("lisa", "builtin:gpt2", {"active_layers=13"});
  EXPECT_FALSE(too_many.plan);
}

TEST(Time, StagesApplyInTriggerOrderAndNextChange) {
  const char* yaml =
      "rules:\n  - freeze: all\n"
      "stages:\n"
      "  - at: {epoch: 2}\n    rules: [{unfreeze: head}]\n"
      "  - at: {epoch: 5}\n    rules: [{unfreeze: {layers: \"-2:\"}}]\n";
  auto c = compile_text(yaml, test::builtin("gpt2"));
  ASSERT_TRUE(c.plan) << c.errors();
  const CompiledPlan& p = *c.plan;
  EXPECT_TRUE(is_frozen(p, "transformer.ln_f.weight", {1, 0}));
  EXPECT_FALSE(is_frozen(p, "transformer.ln_f.weight", {2, 0}));
  EXPECT_EQ(frozen_layers(p, {5, 0}).size(), 10u);
  Time n = p.next_change({0, 0});
  EXPECT_EQ(n.epoch, 2);
  EXPECT_EQ(n.step, -1);
  EXPECT_EQ(p.next_change({3, 0}).epoch, 5);
  EXPECT_EQ(p.next_change({7, 0}).epoch, -1);
  auto tl = p.timeline({10, -1});
  ASSERT_EQ(tl.size(), 3u);
  EXPECT_EQ(tl[1].at.epoch, 2);
  EXPECT_EQ(tl[2].newly_unfrozen.size(), 24u);
}

TEST(Time, MixingEpochAndStepNeedsStepsPerEpoch) {
  const char* yaml =
      "stages:\n"
      "  - at: {epoch: 1}\n    rules: [{freeze: embeddings}]\n"
      "  - at: {step: 150}\n    rules: [{unfreeze: embeddings}]\n";
  auto bad = compile_text(yaml, test::builtin("gpt2"));
  EXPECT_FALSE(bad.plan);
  EXPECT_EQ(bad.diags.items()[0].code, "needs-steps-per-epoch");
  // 100 steps per epoch: epoch 1 (step 100) comes before step 150.
  auto ok = compile_text(yaml, test::builtin("gpt2"), {}, 100);
  ASSERT_TRUE(ok.plan) << ok.errors();
  EXPECT_TRUE(is_frozen(*ok.plan, "transformer.wpe.weight", {1, 120}));
  EXPECT_FALSE(is_frozen(*ok.plan, "transformer.wpe.weight", {1, 150}));
  // 200 steps per epoch: step 150 comes first, then epoch 1 (step 200) freezes again.
  auto swapped = compile_text(yaml, test::builtin("gpt2"), {}, 200);
  ASSERT_TRUE(swapped.plan);
  EXPECT_FALSE(is_frozen(*swapped.plan, "transformer.wpe.weight", {0, 150}));
  EXPECT_TRUE(is_frozen(*swapped.plan, "transformer.wpe.weight", {1, 200}));
}

TEST(Selectors, StacksRelativeLayersAndExcept) {
  auto c = compile_text(
      "rules:\n  - freeze: {layers: {first: 2}, stack: decoder}\n  - freeze: {stack: encoder, "
      "except: {regex: '.*layer_norm.*'}}\n",
      test::builtin("t5-small"));
  ASSERT_TRUE(c.plan) << c.errors();
  EXPECT_TRUE(is_frozen(*c.plan, "decoder.block.1.layer.2.DenseReluDense.wi.weight"));
  EXPECT_FALSE(is_frozen(*c.plan, "decoder.block.2.layer.2.DenseReluDense.wi.weight"));
  EXPECT_TRUE(is_frozen(*c.plan, "encoder.block.3.layer.0.SelfAttention.q.weight"));
  EXPECT_FALSE(is_frozen(*c.plan, "encoder.block.3.layer.0.layer_norm.weight"));
  auto bad = compile_text("rules:\n  - freeze: {stack: decodr}\n", test::builtin("t5-small"));
  EXPECT_FALSE(bad.plan);
  EXPECT_EQ(bad.diags.items()[0].message,
            "no stack 'decodr' in builtin:t5-small — did you mean 'decoder'?");
}

TEST(Selectors, SlicesLikePythonButOutOfRangeIsAnError) {
  auto c =
      compile_text("rules:\n  - freeze: {layers: [\"::4\", -1, \"2:3\"]}\n", test::builtin("gpt2"));
  ASSERT_TRUE(c.plan) << c.errors();
  EXPECT_EQ(frozen_layers(*c.plan), (std::set<int32_t>{0, 2, 4, 8, 11}));
  auto bad = compile_text("rules:\n  - freeze: {layers: \"0:13\"}\n", test::builtin("gpt2"));
  EXPECT_FALSE(bad.plan);
  EXPECT_EQ(
      format_diagnostics(bad.diags),
      "t.yaml:2:22: error: slice '0:13' reaches layer 13, out of range: builtin:gpt2 has 12 layers "
      "(transformer.h.0–11) [out-of-range]\n");
  auto idx = compile_text("rules:\n  - freeze: {layers: 12}\n", test::builtin("gpt2"));
  EXPECT_FALSE(idx.plan);
}

TEST(Selectors, ModuleTypesAndLeaves) {
  auto c = compile_text("rules:\n  - freeze: {all_of: [{module_type: Conv1D}, {leaf: bias}]}\n",
                        test::builtin("gpt2"));
  ASSERT_TRUE(c.plan);
  EXPECT_EQ(frozen_names(*c.plan).size(), 48u);
}

TEST(Selectors, NoLayersIsAClearError) {
  auto c = compile_text("rules:\n  - freeze: {layers: {first: 1}}\n",
                        test::names_inventory({"a.weight", "b.weight"}, "flat"));
  EXPECT_FALSE(c.plan);
  EXPECT_EQ(c.diags.items()[0].message,
            "'layers(first=1)' selects layers, but flat has no repeated blocks");
}

TEST(Params, SetOverridesAndErrors) {
  auto unknown = compile_preset("lp_lora", "builtin:gpt2", {"freeze_ration=0.2"});
  EXPECT_FALSE(unknown.plan);
  EXPECT_EQ(unknown.diags.items()[0].message,
            "'preset:lp_lora' has no parameter 'freeze_ration' — did you mean 'freeze_ratio'?");
  auto type = compile_preset("lp_lora", "builtin:gpt2", {"freeze_embed=maybe"});
  EXPECT_FALSE(type.plan);
  EXPECT_EQ(type.diags.items()[0].message,
            "--set freeze_embed: expected true or false, got 'maybe'");
  auto range = compile_preset("lp_lora", "builtin:gpt2", {"freeze_ratio=1.5"});
  EXPECT_FALSE(range.plan);
  auto bad = compile_preset("lp_lora", "builtin:gpt2", {"freeze_ratio"});
  EXPECT_FALSE(bad.plan);
  EXPECT_EQ(bad.diags.items()[0].message, "--set takes KEY=VALUE, got 'freeze_ratio'");
}

TEST(Extends, FilesPresetsCyclesAndOverrides) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("lf-extends-" + std::to_string(::getpid()));
  fs::create_directories(dir / "sub");
  std::ofstream(dir / "base.yaml") << "extends: preset:lp_lora\nwith: {freeze_ratio: "
                                      "0.25}\nparams:\n  extra: {type: bool, default: true}\n"
                                      "rules:\n  - unfreeze: {layers: 0}\n    when: \"${extra}\"\n";
  std::ofstream(dir / "sub" / "child.yaml") << "extends: ../base.yaml\nrules:\n  - freeze: head\n";
  std::ofstream(dir / "a.yaml") << "extends: b.yaml\n";
  std::ofstream(dir / "b.yaml") << "extends: a.yaml\n";
  // sub/child.yaml extends ../base.yaml: outside its folder, so the folder must be allowed.
  setenv("LAYERFREEZE_EXTENDS_PATH", dir.string().c_str(), 1);
  Diagnostics d;
  SourceTexts src;
  auto s = Strategy::load((dir / "sub" / "child.yaml").string(), d);
  ASSERT_TRUE(s) << format_diagnostics(d);
  EXPECT_EQ(PlanAccess::def(*s).rules.size(), 5u);  // lp_lora (3, with freeze_towers), base, child
  PlanOptions o;
  auto plan = compile(*s, test::builtin("gpt2"), o, d);
  ASSERT_TRUE(plan) << format_diagnostics(d);
  EXPECT_EQ(frozen_layers(PlanAccess::compiled(*plan)),
            (std::set<int32_t>{1, 2}));  // floor(0.25*12)=3, minus layer 0
  EXPECT_TRUE(is_frozen(PlanAccess::compiled(*plan), "transformer.ln_f.weight"));
  o.sets = {"extra=false", "freeze_ratio=0.5"};
  auto plan2 = compile(*s, test::builtin("gpt2"), o, d);
  ASSERT_TRUE(plan2);
  EXPECT_EQ(frozen_layers(PlanAccess::compiled(*plan2)).size(), 6u);
  Diagnostics cyc;
  RulesLoader l2(cyc, src);
  EXPECT_FALSE(l2.load((dir / "a.yaml").string()));
  bool found = false;
  for (const auto& x : cyc.items()) found = found || x.code == "extends-cycle";
  EXPECT_TRUE(found) << format_diagnostics(cyc);
  unsetenv("LAYERFREEZE_EXTENDS_PATH");
  Diagnostics outside;
  RulesLoader l3(outside, src);
  EXPECT_FALSE(l3.load((dir / "sub" / "child.yaml").string()));
  EXPECT_EQ(outside.items()[0].code, "extends-outside");
  fs::remove_all(dir);
}

TEST(CompiledPlan, FingerprintIsStableAndSensitive) {
  auto a = compile_preset("lp_lora", "builtin:gpt2");
  auto b = compile_preset("lp_lora", "builtin:gpt2");
  auto c = compile_preset("lp_lora", "builtin:gpt2", {"freeze_ratio=0.25"});
  ASSERT_TRUE(a.plan && b.plan && c.plan);
  EXPECT_EQ(a.plan->fingerprint(), b.plan->fingerprint());
  EXPECT_NE(a.plan->fingerprint(), c.plan->fingerprint());
  EXPECT_EQ(a.plan->fingerprint().size(), 16u);
}

TEST(CompiledPlan, DecidersAndTiedWarningsNameBothAliases) {
  auto c = compile_text("rules:\n  - freeze: all\n  - unfreeze: head\n", test::builtin("gpt2"));
  ASSERT_TRUE(c.plan);
  auto by = c.plan->deciders_at({0, 0});
  EXPECT_EQ(by[*c.plan->inventory->find("lm_head.weight")]->prov.loc.line, 3);
  ASSERT_EQ(c.plan->warnings.size(), 1u);
  EXPECT_EQ(c.plan->warnings[0].message,
            "'unfreeze head' unfreezes the tied tensor 'transformer.wte.weight' = 'lm_head.weight' "
            "through only some of "
            "its names; every name follows, since it is one tensor");
}

TEST(CompiledPlan, OtherParametersWarn) {
  auto c = compile_preset("freeze_all", "builtin:t5-small");
  ASSERT_TRUE(c.plan);
  bool other = false;
  for (const auto& w : c.plan->warnings) other = other || w.code == "other-params";
  EXPECT_TRUE(other);
}

TEST(CompiledPlan, MoeCompilesWithTwentyRules) {
  std::string yaml = "rules:\n";
  for (int i = 0; i < 20; ++i)
    yaml += "  - " + std::string(i % 2 ? "unfreeze" : "freeze") + ": {regex: '.*layers\\." +
            std::to_string(i) + "\\..*experts\\.1[0-9]+\\..*'}\n";
  auto c = compile_text(yaml, test::builtin("moe-100k"));
  ASSERT_TRUE(c.plan) << c.errors();
  EXPECT_GT(frozen_names(*c.plan).size(), 1000u);
}

}  // namespace
}  // namespace layerfreeze

namespace layerfreeze {
namespace {

TEST(PlanCursor, ChangesOnlyAtStagesAndSeeksBack) {
  auto c = test::compile_preset("gradual_unfreeze", "builtin:gpt2", {"total_epochs=4"});
  ASSERT_TRUE(c.plan);
  PlanCursor cur(*c.plan);
  EXPECT_TRUE(cur.seek({0, 0}));  // the first state, relative to all-trainable
  EXPECT_EQ(cur.newly_frozen().size(), 146u);
  EXPECT_FALSE(cur.stale({0, 5}));
  EXPECT_FALSE(cur.seek({0, 99}));
  EXPECT_TRUE(cur.stale({1, 100}));
  EXPECT_TRUE(cur.seek({1, 100}));
  EXPECT_EQ(cur.newly_unfrozen().size(), 48u);  // ceil(12 * 1 / 3) = 4 layers
  EXPECT_TRUE(cur.seek({3, 300}));
  EXPECT_TRUE(cur.stale({0, 0}));  // backwards: a resumed run
  EXPECT_TRUE(cur.seek({0, 0}));
  EXPECT_EQ(cur.frozen(), c.plan->frozen_at({0, 0}));
}

TEST(PlanCursor, PeriodicSchedules) {
  auto c = test::compile_preset("lisa", "builtin:gpt2", {"interval_steps=10"});
  ASSERT_TRUE(c.plan);
  PlanCursor cur(*c.plan);
  cur.seek({0, 0});
  for (int64_t s = 1; s < 10; ++s) EXPECT_FALSE(cur.stale({0, s}));
  EXPECT_TRUE(cur.stale({0, 10}));
  cur.seek({0, 10});
  EXPECT_EQ(cur.frozen(), c.plan->frozen_at({0, 15}));
}

// A stage's `lr` (absolute) or `lr_scale` decides the learning rate of the param group the
// tensors it unfreezes join; without one, options.unfreeze_lr_scale does.
TEST(StageLr, TheUnfreezingStageDecidesTheGroupLearningRate) {
  Diagnostics d;
  auto inv = load_model("builtin:gpt2", d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  auto c = compile_text(
      "options: {unfreeze_lr_scale: 0.3}\n"
      "rules:\n  - freeze: all\n"
      "stages:\n"
      "  - at: {epoch: 1}\n    lr: 0.05\n    rules: [{unfreeze: {layers: \"-2:\"}}]\n"
      "  - at: {epoch: 2}\n    lr_scale: \"${0.25 / 2}\"\n    rules: [{unfreeze: {layers: 0}}]\n"
      "  - at: {epoch: 3}\n    rules: [{unfreeze: all}]\n",
      *inv);
  ASSERT_TRUE(c.plan) << c.errors();
  const CompiledPlan& p = *c.plan;
  ASSERT_TRUE(p.has_stage_lr());
  const size_t l11 = *inv->find("transformer.h.11.mlp.c_fc.weight");
  const size_t l0 = *inv->find("transformer.h.0.mlp.c_fc.weight");
  const size_t wpe = *inv->find("transformer.wpe.weight");
  // Each at the change point that unfreezes it (what the executor asks).
  EXPECT_DOUBLE_EQ(p.group_lr(l11, p.deciders_at({1, 0})[l11], 0.1), 0.05);
  EXPECT_DOUBLE_EQ(p.group_lr(l0, p.deciders_at({2, 0})[l0], 0.1), 0.1 * 0.125);
  EXPECT_DOUBLE_EQ(p.group_lr(wpe, p.deciders_at({3, 0})[wpe], 0.1), 0.1 * 0.3);
  EXPECT_DOUBLE_EQ(p.group_lr(wpe, nullptr, 0.1), 0.1 * 0.3);
  // The labels say it (every printer shows them).
  EXPECT_EQ(p.stages[0].label, "stage at epoch 1 (new group at lr 0.05)");
  EXPECT_EQ(p.stages[1].label, "stage at epoch 2 (new group at lr ×0.125)");
  EXPECT_EQ(p.stages[2].label, "stage at epoch 3");
}

}  // namespace
}  // namespace layerfreeze
