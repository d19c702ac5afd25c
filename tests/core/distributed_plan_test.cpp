// The torch-free half of distributed support: the plan records ranks exchange and the
// explanation of a disagreement (analysis/plan_record), and the data-parallel lint of
// `layerfreeze plan --distributed` (analysis/distributed_lint).
#include <gtest/gtest.h>

#include <set>

#include "analysis/distributed_lint.hpp"
#include "analysis/plan_record.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

using test::compile_preset;

std::string joined(const Disagreement& d) {
  std::string s = d.message + "\n";
  for (const auto& n : d.notes) s += "note: " + n + "\n";
  return s;
}

// What ranks holding these plans would print.
Disagreement between(const std::vector<const CompiledPlan*>& plans) {
  std::vector<PlanDigest> digests;
  std::vector<std::string> records;
  Time horizon{0, 0};
  for (const CompiledPlan* p : plans) {
    Time h = p->default_horizon();
    horizon.epoch = std::max(horizon.epoch, h.epoch);
    horizon.step = std::max(horizon.step, h.step);
  }
  for (const CompiledPlan* p : plans) {
    digests.push_back(plan_digest(*p));
    records.push_back(plan_record(*p, horizon));
  }
  return explain_disagreement(digests, records);
}

TEST(PlanAgreement, SamePlanSameDigest) {
  auto a = compile_preset("lp_lora", "builtin:gpt2");
  auto b = compile_preset("lp_lora", "builtin:gpt2");
  ASSERT_TRUE(a.plan && b.plan);
  EXPECT_TRUE(disagreeing_ranks({plan_digest(*a.plan), plan_digest(*b.plan), plan_digest(*a.plan)})
                  .empty());
  EXPECT_EQ(digest_text(plan_digest(*a.plan)),
            "plan " + a.plan->fingerprint() + " · inventory " + a.plan->inventory->fingerprint());
}

TEST(PlanAgreement, ParameterThatChangesTheStartIsNamedWithTheFirstTensor) {
  auto a = compile_preset("freeze_first_n", "builtin:gpt2", {"n=3"});
  auto b = compile_preset("freeze_first_n", "builtin:gpt2", {"n=2"});
  ASSERT_TRUE(a.plan && b.plan);
  std::string text = joined(between({a.plan.operator->(), b.plan.operator->()}));
  EXPECT_NE(text.find("the ranks disagree on the freezing plan: rank 1 of 2 differs from rank 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("note: rules parameter `n`: 3 on rank 0, 2 on rank 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("note: first difference at epoch 0 (start): `transformer.h.2.ln_1.weight` is "
                      "frozen on rank 0 "
                      "and trainable on rank 1 (and 11 more parameters)\n"),
            std::string::npos)
      << text;
}

TEST(PlanAgreement, StagesAtOtherTimesAreNamedWithBothTimes) {
  auto a = compile_preset("gradual_unfreeze", "builtin:gpt2", {"total_epochs=12"});
  auto b = compile_preset("gradual_unfreeze", "builtin:gpt2", {"total_epochs=6"});
  ASSERT_TRUE(a.plan && b.plan);
  std::string text = joined(between({a.plan.operator->(), b.plan.operator->()}));
  EXPECT_NE(text.find("note: rules parameter `total_epochs`: 12 on rank 0, 6 on rank 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("note: first difference"), std::string::npos) << text;
  EXPECT_NE(text.find("on rank 0 and"), std::string::npos) << text;
}

TEST(PlanAgreement, PlansThatOnlyDifferInTimingSayWhenEachChanges) {
  const char* rules =
      "layerfreeze: 1\nparams: {at: {type: int}}\nrules: [{freeze: all}]\n"
      "stages:\n  - at: {epoch: \"${at}\"}\n    rules: [{unfreeze: head}]\n";
  auto a = test::compile_text(rules, test::builtin("gpt2"), {"at=3"});
  auto b = test::compile_text(rules, test::builtin("gpt2"), {"at=5"});
  ASSERT_TRUE(a.plan && b.plan) << a.errors() << b.errors();
  std::string text = joined(between({a.plan.operator->(), b.plan.operator->()}));
  EXPECT_NE(text.find("note: first difference: rank 0's plan changes at epoch 3 (stage at epoch "
                      "3); the other's at "
                      "epoch 5: then `transformer.wte.weight` is trainable on rank 0 and frozen on "
                      "rank 1 (and 2 more parameters)"),
            std::string::npos)
      << text;
}

TEST(PlanAgreement, AnotherModelIsNamedByItsParameters) {
  auto a = compile_preset("lp_lora", "builtin:gpt2");
  auto b = compile_preset("lp_lora", "builtin:gpt2-medium");
  ASSERT_TRUE(a.plan && b.plan);
  std::string text = joined(between({a.plan.operator->(), b.plan.operator->()}));
  EXPECT_NE(text.find("note: rank 1 loaded another model: `transformer.h.12.ln_1.weight` and 143 "
                      "more parameters "
                      "exist only on rank 1 (148 parameters on rank 0, 292 on rank 1)"),
            std::string::npos)
      << text;
}

TEST(PlanAgreement, AShapeDifferenceIsNamed) {
  Inventory x = test::names_inventory({"layers.0.w", "layers.1.w", "head.w"});
  Inventory y = test::with_facts(x, [](FactsBuilder& b) {
    b.annotate(1).shape = {20};
    b.annotate(1).numel = 20;
  });
  const char* rules = "layerfreeze: 1\nrules: [{freeze: {layers: \"0:1\"}}]\n";
  auto a = test::compile_text(rules, x), b = test::compile_text(rules, y);
  ASSERT_TRUE(a.plan && b.plan) << a.errors();
  std::string text = joined(between({a.plan.operator->(), b.plan.operator->()}));
  EXPECT_NE(text.find("note: rank 1 loaded another model: `layers.1.w` float32 [10] on rank 0 is "
                      "`layers.1.w` float32 "
                      "[20] on rank 1"),
            std::string::npos)
      << text;
}

TEST(PlanAgreement, SeveralRanksAndUnreadableRecords) {
  auto a = compile_preset("lp_lora", "builtin:gpt2");
  auto b = compile_preset("lp_lora", "builtin:gpt2", {"freeze_ratio=0.25"});
  ASSERT_TRUE(a.plan && b.plan);
  Time h = a.plan->default_horizon();
  std::vector<PlanDigest> d = {plan_digest(*a.plan), plan_digest(*b.plan), plan_digest(*a.plan),
                               plan_digest(*b.plan)};
  std::vector<std::string> r = {plan_record(*a.plan, h), plan_record(*b.plan, h),
                                plan_record(*a.plan, h), "{not json"};
  EXPECT_EQ(disagreeing_ranks(d), (std::vector<int>{1, 3}));
  std::string text = joined(explain_disagreement(d, r));
  EXPECT_NE(text.find("ranks 1 and 3 of 4 differ from rank 0"), std::string::npos) << text;
  EXPECT_NE(text.find("note: rules parameter `freeze_ratio`: 0.5 on rank 0, 0.25 on rank 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("note: rank 3 sent no readable plan record"), std::string::npos) << text;
}

// The lint, preset by preset: which hazards each strategy raises on GPT-2.
struct LintCase {
  const char* preset;
  std::vector<std::string> sets;
  std::set<std::string> codes;
};

void PrintTo(const LintCase& c, std::ostream* os) { *os << c.preset; }

class DistributedLint : public ::testing::TestWithParam<LintCase> {};

std::vector<Diagnostic> lint_of(const CompiledPlan& plan) {
  std::vector<Diagnostic> out;
  distributed_lint(plan, plan.default_horizon(), out);
  return out;
}

TEST_P(DistributedLint, RaisesExactlyTheExpectedHazards) {
  const auto& c = GetParam();
  auto compiled = compile_preset(c.preset, "builtin:gpt2", c.sets);
  ASSERT_TRUE(compiled.plan) << compiled.errors();
  std::set<std::string> codes;
  for (const auto& d : lint_of(*compiled.plan)) {
    EXPECT_EQ(d.severity, Severity::kWarning);
    EXPECT_FALSE(d.notes.empty()) << d.code << " comes with its fix";
    codes.insert(d.code);
  }
  EXPECT_EQ(codes, c.codes);
}

INSTANTIATE_TEST_SUITE_P(
    Gpt2, DistributedLint,
    ::testing::Values(
        LintCase{"freeze_all", {}, {}}, LintCase{"freeze_first_n", {"n=3"}, {}},
        LintCase{"freeze_embeddings", {}, {"fsdp-partial-unit", "checkpoint-frozen-input"}},
        LintCase{"lp_lora", {}, {"fsdp-partial-unit", "checkpoint-frozen-input"}},
        LintCase{"norm_tuning", {}, {"fsdp-partial-unit", "checkpoint-frozen-input"}},
        LintCase{"bitfit", {}, {"fsdp-partial-unit", "checkpoint-frozen-input"}},
        LintCase{"freeze_except_last_n", {"n=2"}, {"checkpoint-frozen-input"}},
        LintCase{"lisa", {}, {"ddp-trainable-set-changes"}},
        LintCase{"gradual_unfreeze",
                 {"total_epochs=10"},
                 {"fsdp-partial-unit", "ddp-trainable-set-changes", "checkpoint-frozen-input"}}),
    [](const auto& info) { return std::string(info.param.preset); });

TEST(DistributedLintText, NamesUnitsTimesAndFixes) {
  auto c = compile_preset("norm_tuning", "builtin:gpt2");
  ASSERT_TRUE(c.plan);
  auto lint = lint_of(*c.plan);
  ASSERT_EQ(lint.size(), 2u);
  EXPECT_EQ(lint[0].message,
            "at epoch 0, 13 units are partly frozen: transformer.h.0: 8 of 12 tensors frozen; "
            "transformer.h.1: 8 of 12 "
            "tensors frozen; transformer.h.2: 8 of 12 tensors frozen; and 10 more");
  EXPECT_NE(lint[0].notes[0].find("use_orig_params=True"), std::string::npos);
  EXPECT_EQ(
      lint[1].message,
      "at epoch 0, everything before transformer.h.0 (the first trainable layer) is frozen, so "
      "its input does not require grad");
  EXPECT_NE(lint[1].notes[0].find("use_reentrant=False"), std::string::npos);

  auto g = compile_preset("gradual_unfreeze", "builtin:gpt2", {"total_epochs=4"});
  ASSERT_TRUE(g.plan);
  for (const auto& d : lint_of(*g.plan)) {
    if (d.code != "ddp-trainable-set-changes") continue;
    EXPECT_EQ(d.message,
              "the trainable set changes 3 times during the run, at epoch 1, epoch 2, epoch 3");
    EXPECT_NE(d.notes[0].find("never registered"), std::string::npos)
        << "unfreezing is the silent-divergence case";
  }
}

TEST(DistributedLintText, FreezingOnlyLaterDoesNotClaimUnregisteredParameters) {
  const char* rules =
      "layerfreeze: 1\nstages:\n  - at: {epoch: 2}\n    rules: [{freeze: {layers: \"0:2\"}}]\n";
  auto c = test::compile_text(rules, test::builtin("gpt2"));
  ASSERT_TRUE(c.plan) << c.errors();
  auto lint = lint_of(*c.plan);
  bool seen = false;
  for (const auto& d : lint) {
    if (d.code != "ddp-trainable-set-changes") continue;
    seen = true;
    EXPECT_EQ(d.message, "the trainable set changes 1 time during the run, at epoch 2");
    EXPECT_EQ(d.notes[0].find("never registered"), std::string::npos);
    EXPECT_NE(d.notes[0].find("find_unused_parameters=True"), std::string::npos);
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace layerfreeze
