// Row selectors (docs/ROWS.md): `tokens` cuts the token rows of the embeddings and the output
// layer, `rows ... of` any tensor's first dimension; the plan shows such tensors PARTIAL, counts
// their memory for the trainable rows only, and carries the rows in every view. Built-in
// architectures: llama2-7b (untied head), gpt2 (tied head), resnet50 (no token embedding).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "analysis/plan_summary.hpp"
#include "core/canonical_plan.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace row_selectors_test {

uint32_t index_of(const CompiledPlan& p, const std::string& name) {
  auto i = p.inventory->find(name);
  EXPECT_TRUE(i) << name;
  return i ? *i : 0;
}

// The rows of `name` that train at `t`.
std::vector<int32_t> trainable_rows(const CompiledPlan& p, const std::string& name,
                                    Time t = {0, 0}) {
  const uint32_t i = index_of(p, name);
  Selection s = p.state_at(t);
  std::vector<int32_t> out;
  if (s.params.test(i)) return out;
  auto frozen = p.slices.indices_in(i, s.slices);
  const int64_t R = p.slices.slices_of(static_cast<size_t>(p.slices.slot[i]));
  for (int32_t r = 0, k = 0; r < R; ++r) {
    if (k < static_cast<int32_t>(frozen.size()) && frozen[static_cast<size_t>(k)] == r)
      ++k;
    else
      out.push_back(r);
  }
  return out;
}

TEST(RowSelectors, TokensCutTheEmbeddingAndAnUntiedHead) {
  auto c = test::compile_text("rules:\n  - freeze: all\n  - unfreeze: {tokens: [\"31990:\", 5]}\n",
                              test::builtin("llama2-7b"));
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  const std::vector<int32_t> want = {5,     31990, 31991, 31992, 31993, 31994,
                                     31995, 31996, 31997, 31998, 31999};
  EXPECT_EQ(trainable_rows(p, "model.embed_tokens.weight"), want);
  EXPECT_EQ(trainable_rows(p, "lm_head.weight"), want);
  EXPECT_TRUE(p.slices.rows(index_of(p, "lm_head.weight")));
  EXPECT_EQ(p.slices.size(), 64000u);
  // 11 rows of 4096 in each of two tensors train; nothing else does.
  EXPECT_EQ(p.frozen_numel(p.state_at({0, 0})), p.inventory->facts().total_numel() - 2 * 11 * 4096);
  PlanSummary sum = summarize(p, OptimizerKind::AdamW, p.default_horizon());
  ASSERT_EQ(sum.stages.size(), 1u);
  const StageSummary& st = sum.stages[0];
  EXPECT_EQ(st.trainable_numel, 2 * 11 * 4096);
  EXPECT_EQ(st.masked_tensors, 2u);
  // float16 checkpoint: 2 bytes an element kept for the gradient, 2 states of the optimizer.
  EXPECT_EQ(st.grad_bytes, 2 * 11 * 4096 * 2);
  EXPECT_EQ(st.optimizer_bytes, 2 * 2 * 11 * 4096 * 2);
  EXPECT_EQ(st.masked_transient_grad_bytes, 2 * 32000 * 4096 * 2);
  bool emb = false, head = false;
  for (const auto& g : st.groups) {
    if (g.label == "Embeddings") {
      emb = true;
      EXPECT_EQ(g.state, GroupState::kPartial);
      EXPECT_EQ(g.detail, "rows 5, 31990-31999 of 32000 train");
    }
    if (g.label == "Head") {
      head = true;
      EXPECT_EQ(g.detail, "rows 5, 31990-31999 of 32000 train");
    }
  }
  EXPECT_TRUE(emb && head);
}

TEST(RowSelectors, TokensOnATiedHeadAreOneSetSaidInThePlan) {
  auto c = test::compile_text("rules:\n  - freeze: all\n  - unfreeze: {tokens: \"50250:\"}\n",
                              test::builtin("gpt2"));
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  EXPECT_EQ(p.slices.params.size(), 1u);  // wte is lm_head
  EXPECT_EQ(trainable_rows(p, "transformer.wte.weight").size(), 7u);
  PlanSummary sum = summarize(p, OptimizerKind::AdamW, p.default_horizon());
  const std::string table = layer_status_table(*p.inventory, p.state_at({0, 0}), p.slices, false);
  EXPECT_NE(table.find("Head:       PARTIAL (rows 50250-50256 of 50257 train, tied to the "
                       "embeddings;"),
            std::string::npos)
      << table;
  EXPECT_EQ(sum.stages[0].masked_tensors, 1u);
}

TEST(RowSelectors, RowsOfAnySelectorComposeWithStagesAndExcept) {
  auto c = test::compile_text(
      "rules:\n"
      "  - freeze: all\n"
      "  - unfreeze: {rows: \"0:8\", of: {regex: 'model\\.layers\\.0\\.mlp\\..*'}, except: "
      "{rows: 3, of: {regex: '.*down_proj.*'}}}\n"
      "stages:\n"
      "  - at: {epoch: 2}\n"
      "    rules:\n"
      "      - freeze: {rows: \"4:\", of: {regex: 'model\\.layers\\.0\\.mlp\\..*'}}\n"
      "  - at: {epoch: 3}\n"
      "    rules:\n"
      "      - unfreeze: {regex: 'model\\.layers\\.0\\.mlp\\.up_proj\\.weight'}\n",
      test::builtin("llama2-7b"));
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  const std::string down = "model.layers.0.mlp.down_proj.weight";
  const std::string up = "model.layers.0.mlp.up_proj.weight";
  EXPECT_EQ(trainable_rows(p, down), (std::vector<int32_t>{0, 1, 2, 4, 5, 6, 7}));
  EXPECT_EQ(trainable_rows(p, up), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(trainable_rows(p, down, {2, 0}), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(trainable_rows(p, up, {3, 0}).size(), 11008u);  // whole again
  EXPECT_FALSE(p.partial(p.state_at({3, 0}), index_of(p, up)));
  // The timeline says which masks changed.
  auto points = p.timeline(p.horizon(5));
  ASSERT_EQ(points.size(), 3u);
  EXPECT_EQ(points[1].remasked.size(), 3u);
  EXPECT_TRUE(points[2].newly_unfrozen.empty());  // up_proj was trainable in part already
  EXPECT_EQ(points[2].remasked.size(), 1u);
}

TEST(RowSelectors, RowCutsAreInTheCanonicalPlan) {
  auto a = test::compile_text("rules:\n  - freeze: all\n  - unfreeze: {tokens: \"31990:\"}\n",
                              test::builtin("llama2-7b"));
  auto b = test::compile_text("rules:\n  - freeze: all\n  - unfreeze: {tokens: \"31991:\"}\n",
                              test::builtin("llama2-7b"));
  ASSERT_TRUE(a.plan && b.plan);
  EXPECT_NE(a.plan->fingerprint(), b.plan->fingerprint());
  auto j = canonical_plan(*a.plan);
  ASSERT_TRUE(j["model"].contains("row_tensors"));
  EXPECT_EQ(j["model"]["row_tensors"].dump(),
            R"([["model.embed_tokens.weight",32000],["lm_head.weight",32000]])");
}

struct BadRows {
  const char* name;
  const char* model;
  const char* rules;
  const char* code;
  const char* text;
};

class RowSelectorErrors : public ::testing::TestWithParam<BadRows> {};

TEST_P(RowSelectorErrors, AreReportedAtTheirPlace) {
  const BadRows& b = GetParam();
  auto c = test::compile_text(b.rules, test::builtin(b.model));
  EXPECT_FALSE(c.plan);
  EXPECT_NE(c.errors().find(std::string("[") + b.code + "]"), std::string::npos) << c.errors();
  EXPECT_NE(c.errors().find(b.text), std::string::npos) << c.errors();
}

INSTANTIATE_TEST_SUITE_P(
    Table, RowSelectorErrors,
    ::testing::Values(
        BadRows{"TokenOutOfRange", "llama2-7b", "rules:\n  - unfreeze: {tokens: [32000]}\n",
                "out-of-range", "token index 32000 is out of range"},
        BadRows{"EmptySlice", "llama2-7b", "rules:\n  - unfreeze: {tokens: \"32000:\"}\n",
                "out-of-range", "selects no row"},
        BadRows{"NoTokenEmbedding", "resnet50", "rules:\n  - unfreeze: {tokens: [1]}\n",
                "no-token-rows", "has no 2-D embeddings tensor"},
        BadRows{"RowsWithoutOf", "llama2-7b", "rules:\n  - unfreeze: {rows: [1]}\n", "missing-key",
                "'rows' needs 'of: SELECTOR'"},
        BadRows{"OfWithoutRows", "llama2-7b", "rules:\n  - unfreeze: {of: head}\n", "misplaced-key",
                "'of' names the tensors of 'rows'"},
        BadRows{"RowOutOfRange", "llama2-7b",
                "rules:\n  - unfreeze: {rows: [4096], of: {regex: "
                "'.*layers\\.0\\.mlp\\.down_proj.*'}}\n",
                "out-of-range", "has 4096 rows"},
        BadRows{"MapValue", "llama2-7b", "rules:\n  - unfreeze: {tokens: {from: 1}}\n",
                "wrong-type", "'tokens' takes row indices"},
        BadRows{"BadSlice", "llama2-7b", "rules:\n  - unfreeze: {tokens: \"1:2:3:4\"}\n",
                "bad-slice", ""},
        BadRows{"RandomOf", "llama2-7b",
                "rules:\n  - unfreeze: {rows: [1], of: {random_layers: {count: 1}}}\n", "bad-value",
                "cannot be random_layers"},
        BadRows{"ProgressivePartial", "llama2-7b",
                "stages:\n  - progressive: {unfreeze: {rows: \"0:4\", of: head}, every: {epochs: "
                "1}}\n",
                "progressive-partial", "only some rows of the tensor"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace row_selectors_test
}  // namespace layerfreeze
