// Expert discovery (docs/EXPERTS.md): routed experts, fused expert tensors, shared experts and
// routers inside the layers, on the real checkpoints' indexes and configs of tests/data.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/discovery_patterns.hpp"
#include "core/experts.hpp"
#include "core/facts_builder.hpp"
#include "core/layer_discovery.hpp"
#include "layerfreeze/model_source.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace experts_test {

const std::string kData = LAYERFREEZE_TEST_DATA;

Inventory discovered(const std::string& spec) {
  Diagnostics d;
  auto inv = load_model(spec, d);
  EXPECT_TRUE(inv) << format_diagnostics(d);
  if (!inv) return {};
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_FALSE(d.has_errors()) << format_diagnostics(d);
  return std::move(*inv);
}

// Per layer: the distinct routed experts and the count of each other part.
struct LayerExperts {
  std::set<int32_t> routed;
  std::map<ExpertPart, int> parts;
};
LayerExperts in_layer(const Inventory& inv, int32_t layer) {
  LayerExperts out;
  for (uint32_t i : inv.layers[static_cast<size_t>(layer)].params) {
    const Param& p = inv.params()[i];
    if (p.expert_part == ExpertPart::kRouted) out.routed.insert(p.expert);
    if (p.expert_part != ExpertPart::kNone) ++out.parts[p.expert_part];
  }
  return out;
}

const Param& param(const Inventory& inv, const std::string& name) {
  return inv.params()[*inv.find(name)];
}

TEST(Experts, MixtralPerExpertModulesAndTheirGate) {
  Inventory inv = discovered(kData + "/real-checkpoints/mixtral-8x22b");
  EXPECT_EQ(inv.num_experts, 8);
  const Param& w2 = param(inv, "model.layers.55.block_sparse_moe.experts.7.w2.weight");
  EXPECT_EQ(w2.expert_part, ExpertPart::kRouted);
  EXPECT_EQ(w2.expert, 7);
  EXPECT_EQ(w2.layer, 55);
  EXPECT_EQ(param(inv, "model.layers.0.block_sparse_moe.gate.weight").expert_part,
            ExpertPart::kRouter);
  EXPECT_EQ(param(inv, "model.layers.0.self_attn.q_proj.weight").expert_part, ExpertPart::kNone);
  auto l0 = in_layer(inv, 0);
  EXPECT_EQ(l0.routed.size(), 8u);
  EXPECT_EQ(l0.parts[ExpertPart::kRouted], 24);
  EXPECT_EQ(l0.parts[ExpertPart::kRouter], 1);
  EXPECT_EQ(describe_layer_experts(inv, 0), "8 experts · router");
}

TEST(Experts, GraniteFusedTensorsHoldEveryExpertAlongTheFirstDimension) {
  Inventory inv = discovered(kData + "/real-checkpoints/granite-3.1-1b-a400m");
  EXPECT_EQ(inv.facts().config_experts, 32);
  EXPECT_EQ(inv.num_experts, 32);
  const Param& in = param(inv, "model.layers.3.block_sparse_moe.input_linear.weight");
  EXPECT_EQ(in.expert_part, ExpertPart::kFused);
  EXPECT_EQ(in.shape.front(), 32);
  EXPECT_EQ(param(inv, "model.layers.3.block_sparse_moe.output_linear.weight").expert_part,
            ExpertPart::kFused);
  EXPECT_EQ(param(inv, "model.layers.3.block_sparse_moe.router.layer.weight").expert_part,
            ExpertPart::kRouter);
  EXPECT_EQ(describe_layer_experts(inv, 3), "32 experts fused in 2 tensors · router");
}

TEST(Experts, GptOssFusedWeightsAndBiasesAndABiasedRouter) {
  Inventory inv = discovered(kData + "/configs/gpt-oss-20b.json");
  EXPECT_EQ(inv.num_experts, 32);
  auto l = in_layer(inv, 0);
  EXPECT_EQ(l.parts[ExpertPart::kFused], 4);  // gate_up_proj, its bias, down_proj, its bias
  EXPECT_EQ(l.parts[ExpertPart::kRouter], 2);
  EXPECT_EQ(param(inv, "model.layers.0.mlp.experts.gate_up_proj_bias").expert_part,
            ExpertPart::kFused);
}

TEST(Experts, QwenMoeSharedExpertItsGateAndPrunedExpertCounts) {
  // Qwen3.5-MoE, REAP-pruned to 180 experts per layer: the config's count.
  Inventory inv = discovered(kData + "/real-checkpoints/qwen3.5-moe-25b-a3b-reap");
  EXPECT_EQ(inv.num_experts, 180);
  auto l = in_layer(inv, 0);
  EXPECT_EQ(l.routed.size(), 180u);
  EXPECT_EQ(l.parts[ExpertPart::kShared], 4);  // shared_expert.{gate,up,down}_proj, its gate
  EXPECT_EQ(l.parts[ExpertPart::kRouter], 1);
  EXPECT_EQ(param(inv, "model.language_model.layers.0.mlp.shared_expert_gate.weight").expert_part,
            ExpertPart::kShared);
}

TEST(Experts, DeepSeekDenseFirstLayersHaveNone) {
  Inventory inv = discovered("builtin:deepseek-v3");
  EXPECT_EQ(inv.num_experts, 256);
  EXPECT_TRUE(describe_layer_experts(inv, 2).empty());
  EXPECT_EQ(describe_layer_experts(inv, 3), "256 experts · shared expert · router");
  // mlp.gate_proj of a dense layer is no router: routers are looked for only beside experts.
  EXPECT_EQ(param(inv, "model.layers.2.mlp.gate_proj.weight").expert_part, ExpertPart::kNone);
}

TEST(Experts, DenseModelsHaveNoExperts) {
  Inventory inv = discovered("builtin:llama2-7b");
  EXPECT_EQ(inv.num_experts, 0);
  for (const auto& p : inv.params()) EXPECT_EQ(p.expert_part, ExpertPart::kNone) << p.name;
}

TEST(Experts, CountFromTheRouterAndAFusedNameWithTheWrongShape) {
  // No config: the router's rows are the count; a tensor named like fused experts whose first
  // dimension is not that count is not fused, and a note says so.
  ModelFacts facts;
  facts.source = "hand-made";
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    Tensor p;
    p.name = name;
    p.shape = shape;
    p.numel = 1;
    for (int64_t d : shape) p.numel *= d;
    p.dtype = "float32";
    FactsBuilder(facts).add(p);
  };
  for (int l = 0; l < 2; ++l) {
    const std::string L = "model.layers." + std::to_string(l) + ".";
    add(L + "mlp.router.weight", {4, 8});
    add(L + "mlp.experts.gate_up_proj", {4, 8, 32});
    add(L + "mlp.experts.down_proj", {l == 0 ? 4 : 5, 16, 8});
  }
  Inventory inv(std::move(facts));
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv.num_experts, 4);
  EXPECT_EQ(param(inv, "model.layers.0.mlp.experts.down_proj").expert_part, ExpertPart::kFused);
  EXPECT_EQ(param(inv, "model.layers.1.mlp.experts.down_proj").expert_part, ExpertPart::kNone);
  ASSERT_FALSE(inv.notes.empty());
  EXPECT_EQ(inv.notes.back(),
            "1 tensor(s) named like fused experts do not have 4 experts along their first "
            "dimension and are not treated as fused (first: model.layers.1.mlp.experts.down_proj)");
}

TEST(Experts, ARulesFileNamesItsOwnExpertContainers) {
  Inventory inv = test::names_inventory({"blocks.0.attn.weight", "blocks.0.ffn.bank.0.w.weight",
                                         "blocks.0.ffn.bank.1.w.weight", "blocks.0.ffn.pick.weight",
                                         "blocks.1.attn.weight"});
  auto c = test::compile_text(
      "discovery:\n  experts: ['(.+\\.)?bank\\.#']\n  routers: ['(.+\\.)?pick\\.weight']\n"
      "rules:\n  - freeze: all\n",
      inv);
  ASSERT_TRUE(c.plan) << c.errors();
  const Inventory& I = *c.plan->inventory;
  EXPECT_EQ(I.num_experts, 2);
  EXPECT_EQ(param(I, "blocks.0.ffn.bank.1.w.weight").expert, 1);
  EXPECT_EQ(param(I, "blocks.0.ffn.pick.weight").expert_part, ExpertPart::kRouter);
  auto bad = test::compile_text("discovery:\n  experts: ['bank']\nrules:\n  - freeze: all\n", inv);
  EXPECT_FALSE(bad.plan);
  EXPECT_NE(bad.errors().find("an experts pattern matches a container key with '#'"),
            std::string::npos)
      << bad.errors();
}

}  // namespace experts_test
}  // namespace layerfreeze
