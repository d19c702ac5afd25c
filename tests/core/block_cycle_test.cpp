// Block cycles (docs/RULES.md, "Block cycles") and preset:badam: one block trains per period,
// in BAdam's orders (ascending, descending, fixed from a start block; reshuffle: every block
// once per cycle, a new order each cycle); the plan prints each block's cost, the SVG the
// cycles; errors at their place. Built-in llama2-7b (32 layers) and gpt2 (tied head).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "analysis/plan_summary.hpp"
#include "core/block_cycle.hpp"
#include "print/plan_printer.hpp"
#include "print/plan_svg.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace block_cycle_test {

// The trunk layers that train at `step` (whole layers only).
std::vector<int32_t> training_layers(const CompiledPlan& p, int64_t step) {
  const Inventory& inv = *p.inventory;
  Bitset frozen = p.frozen_at({0, step});
  std::set<int32_t> out;
  for (size_t i = 0; i < inv.params().size(); ++i)
    if (!frozen.test(i) && inv.params()[i].role == Role::kLayer) out.insert(inv.params()[i].layer);
  return {out.begin(), out.end()};
}

// Whether only the parameters of trunk layers can train at `step`.
bool only_layers_train(const CompiledPlan& p, int64_t step) {
  const Inventory& inv = *p.inventory;
  Bitset frozen = p.frozen_at({0, step});
  for (size_t i = 0; i < inv.params().size(); ++i)
    if (!frozen.test(i) && inv.params()[i].role != Role::kLayer) return false;
  return true;
}

// BAdam's BlockOptimizer (badam 1.4, block_optim.py): ascending starts at block 0 (or
// start_block) and moves +1 mod D after every `switch_block_every` steps, descending starts at
// D-1 and moves -1; fixed stays. Optimizer step s (0-based) uses block (start ± s / K) mod D.
TEST(BlockCycle, BadamAscendingDescendingAndFixedFollowBAdamsOrder) {
  struct Case {
    std::vector<std::string> sets;
    int64_t start, dir;
  };
  const std::vector<Case> cases = {
      {{"switch_every=5"}, 0, 1},
      {{"switch_every=5", "order=descending"}, 31, -1},
      {{"switch_every=5", "order=ascending", "start_block=7"}, 7, 1},
      {{"switch_every=5", "order=descending", "start_block=3"}, 3, -1},
      {{"switch_every=5", "order=fixed", "start_block=12"}, 12, 0},
  };
  for (const auto& c : cases) {
    auto r = test::compile_preset("badam", "builtin:llama2-7b", c.sets);
    ASSERT_TRUE(r.plan) << r.errors();
    for (int64_t s = 0; s < 5 * 70; s += 3) {  // more than two cycles of 32 blocks
      const int64_t want = ((c.start + c.dir * (s / 5)) % 32 + 32) % 32;
      EXPECT_EQ(training_layers(*r.plan, s), std::vector<int32_t>{static_cast<int32_t>(want)})
          << c.sets.back() << " step " << s;
      EXPECT_TRUE(only_layers_train(*r.plan, s)) << "embeddings and head stay frozen (BAdam)";
    }
  }
}

TEST(BlockCycle, ReshuffleVisitsEveryBlockOncePerCycleInANewOrder) {
  auto r = test::compile_preset("badam", "builtin:llama2-7b",
                                {"switch_every=2", "order=reshuffle", "seed=11"});
  ASSERT_TRUE(r.plan) << r.errors();
  std::vector<std::vector<int32_t>> orders;
  for (int64_t c = 0; c < 6; ++c) {
    std::vector<int32_t> order;
    for (int64_t k = 0; k < 32; ++k) {
      auto l = training_layers(*r.plan, (c * 32 + k) * 2);
      ASSERT_EQ(l.size(), 1u);
      EXPECT_EQ(training_layers(*r.plan, (c * 32 + k) * 2 + 1), l) << "a block holds its period";
      order.push_back(l[0]);
    }
    std::vector<int32_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (int32_t k = 0; k < 32; ++k) EXPECT_EQ(sorted[static_cast<size_t>(k)], k) << "cycle " << c;
    orders.push_back(order);
  }
  EXPECT_EQ(std::set<std::vector<int32_t>>(orders.begin(), orders.end()).size(), orders.size())
      << "each cycle draws its own order";
  // A pure function of (seed, step): compiled again, the same; another seed, another order.
  auto again = test::compile_preset("badam", "builtin:llama2-7b",
                                    {"switch_every=2", "order=reshuffle", "seed=11"});
  auto other = test::compile_preset("badam", "builtin:llama2-7b",
                                    {"switch_every=2", "order=reshuffle", "seed=12"});
  ASSERT_TRUE(again.plan && other.plan);
  EXPECT_EQ(again.plan->fingerprint(), r.plan->fingerprint());
  EXPECT_NE(other.plan->fingerprint(), r.plan->fingerprint());
  bool differs = false;
  for (int64_t k = 0; k < 32; ++k)
    differs = differs || training_layers(*other.plan, k * 2) != training_layers(*r.plan, k * 2);
  EXPECT_TRUE(differs);
}

TEST(BlockCycle, PermutationIsAPermutationForEverySize) {
  for (int64_t n : {1, 2, 3, 7, 64, 1000})
    for (int64_t c : {0, 1, 5, 123456789}) {
      auto p = cycle_permutation(n, 42, c);
      std::sort(p.begin(), p.end());
      for (int64_t k = 0; k < n; ++k) ASSERT_EQ(p[static_cast<size_t>(k)], k) << n << " " << c;
    }
}

TEST(BlockCycle, EmbeddingsAndHeadBlocksAndAlwaysTraining) {
  // embeddings: block → block 0; head: block → the last block, with the final norm.
  auto r = test::compile_preset("badam", "builtin:llama2-7b",
                                {"switch_every=1", "embeddings=block", "head=block"});
  ASSERT_TRUE(r.plan) << r.errors();
  const CompiledPlan& p = *r.plan;
  const Inventory& inv = *p.inventory;
  auto trainable = [&](int64_t step) {
    Bitset f = p.frozen_at({0, step});
    std::vector<std::string> names;
    for (size_t i = 0; i < inv.params().size(); ++i)
      if (!f.test(i)) names.push_back(inv.params()[i].name);
    return names;
  };
  EXPECT_EQ(trainable(0), std::vector<std::string>{"model.embed_tokens.weight"});
  EXPECT_EQ(training_layers(p, 1), std::vector<int32_t>{0});
  EXPECT_EQ(trainable(33), (std::vector<std::string>{"model.norm.weight", "lm_head.weight"}));
  EXPECT_EQ(trainable(34), std::vector<std::string>{"model.embed_tokens.weight"}) << "wraps";
  // train: always, beside the block.
  auto t = test::compile_preset("badam", "builtin:llama2-7b", {"embeddings=train", "head=train"});
  ASSERT_TRUE(t.plan) << t.errors();
  Bitset f = t.plan->frozen_at({0, 0});
  for (const char* n : {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"})
    EXPECT_FALSE(f.test(*inv.find(n))) << n;
  EXPECT_EQ(training_layers(*t.plan, 0), std::vector<int32_t>{0});
  // A tied head (gpt2): the head block does not take the tied embedding a second time.
  auto g = test::compile_preset("badam", "builtin:gpt2", {"embeddings=block", "head=block"});
  ASSERT_TRUE(g.plan) << g.errors();
  const DynamicSet* cyc = g.plan->stages[0].cycle();
  ASSERT_TRUE(cyc);
  EXPECT_EQ(cyc->block_names.front(), "embeddings");
  EXPECT_EQ(cyc->block_names.back(), "head and the rest");
  for (uint32_t i : cyc->blocks.back().params)
    EXPECT_EQ(std::count(cyc->blocks.front().params.begin(), cyc->blocks.front().params.end(), i),
              0);
}

TEST(BlockCycle, ModulesGroupsAndListedBlocks) {
  // Each matrix module of each layer; a layer's norms train with its first block.
  auto m = test::compile_preset("badam", "builtin:llama2-7b", {"blocks=modules"});
  ASSERT_TRUE(m.plan) << m.errors();
  const DynamicSet* c = m.plan->stages[0].cycle();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->blocks.size(), 32u * 7u);
  EXPECT_EQ(c->block_names[0], "layer 0 self_attn.q_proj");
  EXPECT_EQ(c->block_names[6], "layer 0 mlp.down_proj");
  EXPECT_EQ(c->block_names[7], "layer 1 self_attn.q_proj");
  EXPECT_EQ(c->blocks[0].params.size(), 3u) << "q_proj.weight and the layer's two norms";
  // Groups of 3 layers: 11 blocks, the last of 2.
  auto g = test::compile_preset("badam", "builtin:llama2-7b", {"layers_per_block=3"});
  ASSERT_TRUE(g.plan) << g.errors();
  const DynamicSet* gc = g.plan->stages[0].cycle();
  ASSERT_EQ(gc->blocks.size(), 11u);
  EXPECT_EQ(gc->block_names[10], "layers 30–31");
  EXPECT_EQ(training_layers(*g.plan, 50), (std::vector<int32_t>{3, 4, 5}));
  // Listed blocks: any selectors, in the order written.
  auto l = test::compile_text(
      "rules:\n  - freeze: all\nstages:\n  - every: {steps: 10}\n    rules:\n"
      "      - unfreeze: {block_cycle: {blocks: [{layers: \"-4:\"}, head, {layers: \"0:4\"}], "
      "order: descending}}\n",
      test::builtin("llama2-7b"));
  ASSERT_TRUE(l.plan) << l.errors();
  EXPECT_EQ(training_layers(*l.plan, 0), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_TRUE(training_layers(*l.plan, 10).empty());
  EXPECT_EQ(training_layers(*l.plan, 20), (std::vector<int32_t>{28, 29, 30, 31}));
  EXPECT_EQ(training_layers(*l.plan, 30), (std::vector<int32_t>{0, 1, 2, 3}));
  // A listed block that cuts rows keeps its cut: the new tokens' rows, then the last layer.
  auto r = test::compile_text(
      "rules:\n  - freeze: all\nstages:\n  - every: {steps: 10}\n    rules:\n"
      "      - unfreeze: {block_cycle: {blocks: [{tokens: \"31990:\"}, {layers: -1}]}}\n",
      test::builtin("llama2-7b"));
  ASSERT_TRUE(r.plan) << r.errors();
  const uint32_t emb = *r.plan->inventory->find("model.embed_tokens.weight");
  Selection s0 = r.plan->state_at({0, 0});
  EXPECT_FALSE(s0.params.test(emb));
  EXPECT_EQ(r.plan->slices.count(emb, s0.slices), 31990) << "frozen rows of the embedding";
  EXPECT_TRUE(training_layers(*r.plan, 0).empty());
  Selection s1 = r.plan->state_at({0, 10});
  EXPECT_TRUE(s1.params.test(emb));
  EXPECT_EQ(training_layers(*r.plan, 10), std::vector<int32_t>{31});
}

TEST(BlockCycle, ThePlanPrintsEachBlocksCostAndShowsTheCycle) {
  auto r = test::compile_preset("badam", "builtin:llama2-7b");
  ASSERT_TRUE(r.plan) << r.errors();
  const CompiledPlan& p = *r.plan;
  PlanSummary sum = summarize(p, OptimizerKind::AdamW, p.default_horizon());
  // One whole cycle and the first period of the next.
  EXPECT_EQ(sum.stages.size(), 33u);
  EXPECT_EQ(sum.stages.back().point.cycle, 1);
  ASSERT_EQ(sum.cycles.size(), 1u);
  ASSERT_EQ(sum.cycles[0].blocks.size(), 32u);
  // A llama layer: 202,383,360 float16 parameters; gradients and two AdamW states.
  EXPECT_EQ(sum.cycles[0].blocks[5].numel, 202383360);
  EXPECT_EQ(sum.cycles[0].blocks[5].grad_bytes, 2 * 202383360LL);
  EXPECT_EQ(sum.cycles[0].blocks[5].optimizer_bytes, 2 * 2 * 202383360LL);
  EXPECT_EQ(sum.stages[5].grad_bytes, sum.cycles[0].blocks[5].grad_bytes);
  const std::string text = plan_text(sum);
  EXPECT_NE(text.find("block cycle: every 'blocks' 50 steps (preset:badam:"), std::string::npos)
      << text.substr(0, 800);
  EXPECT_NE(text.find("32 blocks, a cycle is 1,600 steps · ascending from block 0 ('layer 0')"),
            std::string::npos);
  EXPECT_NE(text.find("32 blocks of 202.4M parameters (layer 0, layer 1, layer 2, …, layer 31): "
                      "gradients + optimizer state 1.2 GB each (adamw)"),
            std::string::npos);
  EXPECT_NE(text.find("(period 32 · cycle 1 · block 0 'layer 0')"), std::string::npos);
  const std::string json = plan_json(sum);
  EXPECT_NE(json.find("\"block_cycles\""), std::string::npos);
  EXPECT_NE(json.find("\"cycle_length\": 1600"), std::string::npos);
  const std::string svg = plan_svg(sum);
  EXPECT_NE(svg.find("class=\"lf-cycle\" data-cycle=\"0\" data-first-col=\"0\" "
                     "data-last-col=\"31\""),
            std::string::npos);
  EXPECT_NE(svg.find("data-cycle=\"1\" data-first-col=\"32\""), std::string::npos);
  EXPECT_NE(svg.find("lf-cycle-start"), std::string::npos);
}

// A cycle of every module of a 101,333-tensor model (every routed expert's modules are blocks):
// blocks hold their tensors sparsely, so the plan, its summary and its canonical text stay
// linear in the model (measured in bench/, not asserted here as a time).
TEST(BlockCycle, EveryModuleOfAHundredThousandTensorModel) {
  auto r = test::compile_preset("badam", "builtin:moe-100k", {"blocks=modules"});
  ASSERT_TRUE(r.plan) << r.errors();
  const DynamicSet* c = r.plan->stages[0].cycle();
  ASSERT_TRUE(c);
  size_t members = 0;
  for (const auto& b : c->blocks) members += b.params.size();
  EXPECT_GT(c->blocks.size(), 10000u);
  EXPECT_LE(members, r.plan->inventory->params().size()) << "each tensor in one block";
  PlanSummary sum = summarize(*r.plan, OptimizerKind::AdamW, r.plan->default_horizon());
  EXPECT_EQ(sum.stages.size(), 65u) << "a longer cycle shows its first 65 periods";
  EXPECT_EQ(sum.cycles[0].blocks.size(), c->blocks.size());
  EXPECT_FALSE(r.plan->canonical().empty());
}

struct BadCycle {
  const char* name;
  std::string rules;
  const char* code;
  const char* text;
};

class BlockCycleErrors : public ::testing::TestWithParam<BadCycle> {};

std::string in_stage(const std::string& cycle) {
  return "rules:\n  - freeze: all\nstages:\n  - every: {steps: 10}\n    rules:\n"
         "      - unfreeze: {block_cycle: " +
         cycle + "}\n";
}

TEST_P(BlockCycleErrors, AreReportedAtTheirPlace) {
  const BadCycle& b = GetParam();
  auto c = test::compile_text(b.rules, test::builtin("llama2-7b"));
  EXPECT_FALSE(c.plan);
  EXPECT_NE(c.errors().find(std::string("[") + b.code + "]"), std::string::npos) << c.errors();
  EXPECT_NE(c.errors().find(b.text), std::string::npos) << c.errors();
}

INSTANTIATE_TEST_SUITE_P(
    Table, BlockCycleErrors,
    ::testing::Values(
        BadCycle{"RandomIsReshuffle", in_stage("{order: random}"), "bad-value",
                 "BAdam and LLaMA-Factory call it 'random': here it is 'reshuffle'"},
        BadCycle{"UnknownOrder", in_stage("{order: ascendin}"), "bad-value",
                 "t.yaml:6:41: error: 'order' is 'ascendin', which is not ascending, descending, "
                 "reshuffle, fixed — did you mean 'ascending'?"},
        BadCycle{"UnknownBlocks", in_stage("{blocks: layer}"), "bad-value",
                 "the plural: 'blocks: layers'"},
        BadCycle{"StartWithReshuffle", in_stage("{order: reshuffle, start: 3}"), "bad-value",
                 "'start' has no meaning with order: reshuffle"},
        BadCycle{"StartOutOfRange", in_stage("{start: 32}"), "out-of-range",
                 "start 32 is out of range: the cycle has 32 blocks (0–31)"},
        BadCycle{"GroupTooLarge", in_stage("{layers_per_block: 33}"), "out-of-range",
                 "layers_per_block 33 is out of range"},
        BadCycle{"EmptyListedBlock", in_stage("{blocks: [head, {regex: 'nothing'}]}"),
                 "empty-block", "t.yaml:6:49: error: block 1 of the cycle"},
        BadCycle{"FromWithList", in_stage("{blocks: [head], from: layers}"), "misplaced-key",
                 "'from' narrows 'blocks: layers'"},
        BadCycle{"RandomBlock", in_stage("{blocks: [head, {random_layers: {count: 1}}]}"),
                 "nested-random", "a block of block_cycle cannot itself vary by period"},
        BadCycle{"UnknownKey", in_stage("{blocks: layers, every: 3}"), "unknown-key", "every"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(BlockCycle, OutsideAPeriodicStageIsAWarningInThePlan) {
  auto c =
      test::compile_text("rules:\n  - freeze: all\n  - unfreeze: {block_cycle: {blocks: layers}}\n",
                         test::builtin("llama2-7b"));
  ASSERT_TRUE(c.plan) << c.errors();
  ASSERT_EQ(c.plan->warnings.size(), 1u);
  EXPECT_EQ(c.plan->warnings[0].code, "not-periodic");
  auto strict =
      test::compile_text("rules:\n  - freeze: all\n  - unfreeze: {block_cycle: {blocks: layers}}\n",
                         test::builtin("llama2-7b"), {}, std::nullopt, true);
  EXPECT_FALSE(strict.plan);
}

TEST(BlockCycle, PresetChoicesAreChecked) {
  auto r = test::compile_preset("badam", "builtin:llama2-7b", {"embeddings=blok"});
  EXPECT_FALSE(r.plan);
  EXPECT_NE(r.errors().find("must be one of frozen, block, train, got 'blok' — did you mean "
                            "'block'?"),
            std::string::npos)
      << r.errors();
}

}  // namespace block_cycle_test
}  // namespace layerfreeze
