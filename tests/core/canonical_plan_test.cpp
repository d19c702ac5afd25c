// The canonical plan and its fingerprint (core/canonical_plan.hpp): every change a trainer would
// run differently changes the fingerprint and is named by diff(a, b); a change that runs the
// same (a comment, a rule split in two, a stage that changes nothing) changes neither. The
// public counts (Plan::state_at) agree with the printers on fused mixture-of-experts models.
#include <nlohmann/json.hpp>

#include "api/plan_access.hpp"
#include "core/canonical_plan.hpp"
#include "core/plan.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace canonical_plan_test {

const std::string kData = LAYERFREEZE_TEST_DATA;

// A strategy with every knob a trainer runs by: a bound parameter, every policy, a stage with a
// learning-rate scale. Each variant below changes one thing.
const std::string kBase = R"(layerfreeze: 1
name: knobs
params:
  ratio: {type: float, default: 0.5}
options:
  batchnorm: unchanged
  optimizer_state: drop
  unfreeze_lr_scale: 1.0
  lr_decay: 1.0
rules:
  - freeze: {layers: {first_ratio: "${ratio}"}}
  - freeze: embeddings
stages:
  - at: {epoch: 2}
    lr_scale: 0.1
    rules:
      - unfreeze: {layers: "0:3"}
  - at: {epoch: 4}
    rules:
      - unfreeze: all
)";

std::string replace(std::string s, const std::string& from, const std::string& to) {
  auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

Plan compiled(const std::string& yaml, const std::string& model = "builtin:gpt2",
              std::vector<std::string> sets = {}) {
  Diagnostics d;
  auto s = Strategy::from_yaml(yaml, "t.yaml", d);
  EXPECT_TRUE(s) << format_diagnostics(d);
  auto inv = load_model(model, d);
  EXPECT_TRUE(inv) << format_diagnostics(d);
  PlanOptions o;
  o.sets = std::move(sets);
  auto p = compile(*s, std::move(*inv), o, d);
  EXPECT_TRUE(p) << format_diagnostics(d);
  return *p;
}

struct Change {
  const char* name;
  std::string yaml;
  std::vector<std::string> sets;
  PlanDiff::Item::Kind kind;
  const char* where;  // the item diff(a, b) must name
};

TEST(CanonicalPlan, EveryKnobATrainerRunsByChangesTheFingerprintAndIsNamed) {
  using Kind = PlanDiff::Item::Kind;
  const Plan base = compiled(kBase);
  const std::vector<Change> changes = {
      {"stage lr_scale",
       replace(kBase, "lr_scale: 0.1", "lr_scale: 0.2"),
       {},
       Kind::kLearningRate,
       "epoch 2"},
      {"stage lr",
       replace(kBase, "lr_scale: 0.1", "lr: 0.001"),
       {},
       Kind::kLearningRate,
       "epoch 2"},
      {"unfreeze_lr_scale",
       replace(kBase, "unfreeze_lr_scale: 1.0", "unfreeze_lr_scale: 0.5"),
       {},
       Kind::kPolicy,
       "policy unfreeze_lr_scale"},
      {"lr_decay",
       replace(kBase, "lr_decay: 1.0", "lr_decay: 2.6"),
       {},
       Kind::kPolicy,
       "policy lr_decay"},
      {"optimizer_state",
       replace(kBase, "optimizer_state: drop", "optimizer_state: keep"),
       {},
       Kind::kPolicy,
       "policy optimizer_state"},
      {"batchnorm",
       replace(kBase, "batchnorm: unchanged", "batchnorm: eval_when_frozen"),
       {},
       Kind::kPolicy,
       "policy batchnorm"},
      {"frozen_prefix",
       replace(kBase, "batchnorm: unchanged", "batchnorm: unchanged\n  frozen_prefix: eval"),
       {},
       Kind::kPolicy,
       "policy frozen_prefix"},
      {"bound parameter, same states", kBase, {"ratio=0.51"}, Kind::kParameter, "parameter ratio"},
      {"frozen state", replace(kBase, "\"0:3\"", "\"0:2\""), {}, Kind::kState, "epoch 2"},
      {"trigger",
       replace(kBase, "at: {epoch: 4}", "at: {epoch: 5}"),
       {},
       Kind::kSchedule,
       "epoch 4"},
  };
  for (const auto& c : changes) {
    const Plan p = compiled(c.yaml, "builtin:gpt2", c.sets);
    EXPECT_NE(p.fingerprint(), base.fingerprint()) << c.name;
    const PlanDiff d = diff(base, p);
    EXPECT_TRUE(d.differs()) << c.name;
    bool named = false;
    for (const auto& i : d.items) named = named || (i.kind == c.kind && i.where == c.where);
    EXPECT_TRUE(named) << c.name << ": " << d.text();
  }
}

TEST(CanonicalPlan, WhatRunsTheSameKeepsTheFingerprint) {
  const Plan base = compiled(kBase);
  const std::vector<std::pair<const char*, std::string>> same = {
      {"a comment", "# reviewed in PR 12\n" + replace(kBase, "rules:\n", "rules:  # initial\n")},
      {"a rule split in two",
       replace(kBase, "      - unfreeze: {layers: \"0:3\"}",
               "      - unfreeze: {layers: \"0:1\"}\n      - unfreeze: {layers: \"1:3\"}")},
      {"a stage that changes nothing",
       kBase + "  - at: {epoch: 6}\n    rules:\n      - unfreeze: all\n"},
      {"the name", replace(kBase, "name: knobs", "name: renamed")},
  };
  for (const auto& [what, yaml] : same) {
    const Plan p = compiled(yaml);
    EXPECT_EQ(p.fingerprint(), base.fingerprint()) << what << ": " << diff(base, p).text();
    EXPECT_FALSE(diff(base, p).differs()) << what;
  }
  // Two compiles of one strategy: one canonical text, byte for byte.
  EXPECT_EQ(compiled(kBase).canonical(), base.canonical());
}

TEST(CanonicalPlan, IsVersionedSortedJsonOfTheWholePlan) {
  const Plan p = compiled(kBase);
  auto j = nlohmann::json::parse(p.canonical());
  EXPECT_EQ(j["format"], kCanonicalPlanFormat);
  EXPECT_EQ(j.dump(), p.canonical());  // keys sorted, compact: the text is its own dump
  EXPECT_EQ(fingerprint_of(p.canonical()), p.fingerprint());
  EXPECT_EQ(j["model"]["inventory"], p.inventory().fingerprint());
  EXPECT_EQ(j["params"]["ratio"], "0.5");
  EXPECT_EQ(j["policies"]["lr_decay"], 1.0);
  ASSERT_EQ(j["changes"].size(), 2u);
  EXPECT_EQ(j["changes"][0]["at"]["epoch"], 2);
  // Layers 0–2 of GPT-2 open at epoch 2 in a group at lr ×0.1: 36 tensors, 12 a layer.
  ASSERT_EQ(j["changes"][0]["groups"].size(), 1u);
  EXPECT_EQ(j["changes"][0]["groups"][0]["lr_scale"], 0.1);
  EXPECT_EQ(j["changes"][0]["groups"][0]["tensors"], "2-37");
}

TEST(CanonicalPlan, RangesText) {
  Bitset b(200);
  EXPECT_EQ(ranges_text(b), "");
  for (size_t i : {0, 1, 2, 5, 63, 64, 65, 127, 128, 199}) b.set(i);
  EXPECT_EQ(ranges_text(b), "0-2,5,63-65,127-128,199");
  EXPECT_EQ(ranges_text(Bitset(130, true)), "0-129");
}

// A scattered set (every bias of a model) is written as words, and read back by the diff.
TEST(CanonicalPlan, AScatteredSetIsWrittenAsWordsAndReadBack) {
  Bitset b(300);
  for (size_t i = 0; i < 300; i += 2) b.set(i);
  const std::string t = set_text(b);
  ASSERT_EQ(t.rfind("hex:", 0), 0u) << t;
  EXPECT_EQ(t.substr(4, 16), "5555555555555555");
  EXPECT_EQ(t.size(), 4u + 5 * 16);
  Bitset c(300);
  c.set(3);
  c.set(4);
  EXPECT_EQ(set_text(c), "3-4");
  const Plan biases = compiled("rules:\n  - freeze: {leaf: bias}\n");
  const Plan weights = compiled("rules:\n  - freeze: {leaf: weight}\n");
  EXPECT_NE(biases.canonical().find("\"frozen\":\"hex:"), std::string::npos);
  const std::string d = diff(biases, weights).text();
  EXPECT_NE(d.find("tensors frozen in A only (`transformer.h.0.ln_1.bias`"), std::string::npos)
      << d;
}

TEST(CanonicalPlan, AnExpertSliceChangesTheFingerprint) {
  const std::string granite = kData + "/real-checkpoints/granite-3.1-1b-a400m";
  const std::string yaml =
      "rules:\n  - freeze: all\n  - unfreeze: {experts: [3, 7], layers: \"-2:\"}\n";
  const Plan a = compiled(yaml, granite);
  const Plan b = compiled(replace(yaml, "[3, 7]", "[3, 8]"), granite);
  EXPECT_NE(a.fingerprint(), b.fingerprint());
  const PlanDiff d = diff(a, b);
  ASSERT_TRUE(d.differs());
  EXPECT_NE(d.text().find("expert slices frozen in A only"), std::string::npos) << d.text();
}

// One count: the public state, the JSON plan and the text agree on a fused MoE cut by experts.
TEST(CanonicalPlan, PublicStateCountsMaskedExpertsLikeThePrinters) {
  const std::string granite = kData + "/real-checkpoints/granite-3.1-1b-a400m";
  const Plan p = compiled(
      "rules:\n  - freeze: all\n  - unfreeze: {experts: [3, 7], layers: \"-2:\"}\n", granite);
  const PlanState s = p.state_at({0, 0});
  EXPECT_EQ(s.trainable_numel, 6291456);  // 2 experts × 2 layers × the fused tensors' share
  EXPECT_EQ(s.frozen_numel + s.trainable_numel, p.inventory().total_numel());
  EXPECT_FALSE(s.masked.empty());
  for (const auto& [i, experts] : s.masked) EXPECT_EQ(experts.size(), 30u);  // 32 experts - 2
  auto json = nlohmann::json::parse(p.json());
  EXPECT_EQ(json["stages"][0]["trainable_numel"].get<int64_t>(), s.trainable_numel);
  EXPECT_NE(p.text().find("6,291,456"), std::string::npos);
}

}  // namespace canonical_plan_test
}  // namespace layerfreeze

namespace layerfreeze {
namespace canonical_plan_test {

// One count (issue 24): at every change point of every shipped preset, on GPT-2, a
// vision-language model and a fused mixture-of-experts model, the public state, the JSON plan
// and the compiled plan's element count agree, and frozen + trainable is the model.
TEST(CanonicalPlan, EveryViewCountsTheSameAtEveryChangePoint) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> presets = {
      {"bitfit", {}},
      {"freeze_all", {}},
      {"freeze_by_name", {"patterns=['.*attn.*', '.*attention.*']"}},
      {"freeze_embeddings", {}},
      {"freeze_except_last_n", {"n=2"}},
      {"freeze_first_n", {"n=2"}},
      {"freeze_last_n", {"n=2"}},
      {"gradual_unfreeze", {"total_epochs=4"}},
      {"lisa", {}},
      {"lp_lora", {}},
      {"norm_tuning", {}},
      {"ulmfit", {}},
  };
  const std::vector<std::string> models = {"builtin:gpt2",
                                           kData + "/real-checkpoints/olmocr-qwen2-vl-7b",
                                           kData + "/real-checkpoints/granite-3.1-1b-a400m"};
  for (const auto& model : models) {
    Diagnostics d;
    auto inv = load_model(model, d);
    ASSERT_TRUE(inv) << format_diagnostics(d);
    std::vector<std::pair<std::string, std::string>> cases;
    for (const auto& [preset, sets] : presets) {
      auto s = Strategy::load("preset:" + preset, d);
      ASSERT_TRUE(s) << format_diagnostics(d);
      PlanOptions o;
      o.sets = sets;
      o.steps_per_epoch = 100;
      auto p = compile(*s, *inv, o, d);
      ASSERT_TRUE(p) << preset << " on " << model << ": " << format_diagnostics(d);
      const auto json = nlohmann::json::parse(p->json());
      const auto& stages = json["stages"];
      const auto points = p->change_points();
      ASSERT_EQ(stages.size(), points.size()) << preset << " on " << model;
      for (size_t k = 0; k < points.size(); ++k) {
        const PlanState st = p->state_at(points[k].at);
        const CompiledPlan& cp = PlanAccess::compiled(*p);
        EXPECT_EQ(st.frozen_numel, cp.frozen_numel(cp.state_at(points[k].at)));
        EXPECT_EQ(st.trainable_numel, stages[k]["trainable_numel"].get<int64_t>())
            << preset << " on " << model << " at change point " << k;
        EXPECT_EQ(st.frozen_numel, stages[k]["frozen_numel"].get<int64_t>());
        EXPECT_EQ(st.frozen_numel + st.trainable_numel, p->inventory().total_numel());
      }
    }
  }
}

}  // namespace canonical_plan_test
}  // namespace layerfreeze
