// ExpertStats against selections computed by hand: ESFT's gate and token rules, ties, the edges
// of p, and the ESFT JSON it writes (read back by the expert config reader).
#include <gtest/gtest.h>

#include "core/expert_config.hpp"
#include "layerfreeze/expert_stats.hpp"

namespace layerfreeze {
namespace expert_stats_test {

using Rule = ExpertStats::Rule;

// 4 experts, top-2, 4 tokens in layer 1:
//   token 0: experts 0 (0.7), 1 (0.3)     token 1: 0 (0.6), 2 (0.4)
//   token 2: 2 (0.5), 3 (0.5)             token 3: 0 (0.9), 3 (0.1)
// gate sums: e0 2.2, e1 0.3, e2 0.9, e3 0.6 (total 4) -> 0.55, 0.075, 0.225, 0.15
// token counts: e0 3, e1 1, e2 2, e3 2 (of 8)         -> 0.375, 0.125, 0.25, 0.25
ExpertStats example() {
  ExpertStats s(4, 2);
  s.add(1, {0, 1, 0, 2, 2, 3, 0, 3}, {0.7f, 0.3f, 0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.1f});
  return s;
}

TEST(ExpertStats, GateAndTokenScoresByHand) {
  auto s = example();
  auto g = s.scores(1, Rule::kGate);
  EXPECT_NEAR(g[0], 0.55, 1e-6);
  EXPECT_NEAR(g[1], 0.075, 1e-6);
  EXPECT_NEAR(g[2], 0.225, 1e-6);
  EXPECT_NEAR(g[3], 0.15, 1e-6);
  auto t = s.scores(1, Rule::kToken);
  EXPECT_EQ(t, std::vector<double>({0.375, 0.125, 0.25, 0.25}));
  EXPECT_EQ(s.tokens(1), 4);
}

TEST(ExpertStats, SmallestSetReachingP) {
  auto s = example();
  // Gate: 0.55 alone reaches 0.1 and 0.5; 0.6 needs e0 + e2 (0.775).
  EXPECT_EQ(s.select(Rule::kGate, 0.1).at(1), std::vector<int32_t>({0}));
  EXPECT_EQ(s.select(Rule::kGate, 0.5).at(1), std::vector<int32_t>({0}));
  EXPECT_EQ(s.select(Rule::kGate, 0.6).at(1), std::vector<int32_t>({0, 2}));
  // Token: e2 and e3 tie at 0.25: the lower index first.
  EXPECT_EQ(s.select(Rule::kToken, 0.5).at(1), std::vector<int32_t>({0, 2}));
  EXPECT_EQ(s.select(Rule::kToken, 0.7).at(1), std::vector<int32_t>({0, 2, 3}));
  // Edges: p = 0 keeps none; p = 1 and beyond keep every expert that scored, then the rest.
  EXPECT_TRUE(s.select(Rule::kToken, 0.0).at(1).empty());
  EXPECT_EQ(s.select(Rule::kToken, 1.0).at(1), std::vector<int32_t>({0, 2, 3, 1}));
  EXPECT_EQ(s.select(Rule::kToken, 2.0).at(1).size(), 4u);
}

TEST(ExpertStats, WritesEsftJsonThatReadsBack) {
  auto s = example();
  s.add(3, std::vector<int64_t>{3, 1}, std::vector<float>{0.8f, 0.2f});
  std::string json = s.esft_json(Rule::kGate, 0.1);
  EXPECT_EQ(json,
            "{\"experts\": {\"1\": [0], \"3\": [3]}, \"shared_experts\": false, "
            "\"non_expert_modules\": false}\n");
  Diagnostics d;
  auto back = parse_expert_config(json, "stats.json", d);
  ASSERT_TRUE(back) << format_diagnostics(d);
  EXPECT_EQ(back->experts, s.select(Rule::kGate, 0.1));
}

TEST(ExpertStats, BadInputsAreErrors) {
  EXPECT_THROW(ExpertStats(4, 5), DiagnosticError);
  ExpertStats s(4, 2);
  EXPECT_THROW(s.add(0, std::vector<int64_t>{0, 4}, std::vector<float>{0.5f, 0.5f}),
               DiagnosticError);
  EXPECT_THROW(s.add(0, std::vector<int64_t>{0, 1, 2}, std::vector<float>{}), DiagnosticError);
  s.add(0, std::vector<int64_t>{0, 1}, std::vector<float>{});  // indices only
  EXPECT_EQ(s.select(Rule::kToken, 0.2).at(0), std::vector<int32_t>({0}));
  EXPECT_THROW(s.select(Rule::kGate, 0.2), DiagnosticError);
}

}  // namespace expert_stats_test
}  // namespace layerfreeze
