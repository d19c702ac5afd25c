// Expert selectors, masks in the plan, ESFT expert configs and preset:esft (docs/EXPERTS.md), on
// the real checkpoints' indexes and configs of tests/data: Granite-MoE (fused experts),
// Mixtral-8x22B (one module per expert), DeepSeek-V2-Lite (ESFT's own model and configs) and
// Qwen3.5-MoE.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include "core/discovery_patterns.hpp"
#include "core/expert_config.hpp"
#include "core/layer_discovery.hpp"
#include "core/replay.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace expert_selectors_test {

const std::string kData = LAYERFREEZE_TEST_DATA;
const std::string kGranite = kData + "/real-checkpoints/granite-3.1-1b-a400m";
const std::string kMixtral = kData + "/real-checkpoints/mixtral-8x22b";
const std::string kQwenMoe = kData + "/real-checkpoints/qwen3.5-moe-25b-a3b-reap";
const std::string kDeepSeekLite = kData + "/configs/deepseek-v2-lite.json";
const std::string kIntent = kData + "/esft/deepseek-v2-lite-intent.json";

Inventory model(const std::string& spec) {
  Diagnostics d;
  auto inv = load_model(spec, d);
  EXPECT_TRUE(inv) << format_diagnostics(d);
  return inv ? std::move(*inv) : Inventory{};
}

Inventory discovered(const std::string& spec) {
  Inventory inv = model(spec);
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_FALSE(d.has_errors()) << format_diagnostics(d);
  return inv;
}

uint32_t index_of(const CompiledPlan& p, const std::string& name) {
  auto i = p.inventory->find(name);
  EXPECT_TRUE(i) << name;
  return i ? *i : 0;
}

std::vector<int32_t> frozen_experts(const CompiledPlan& p, const Selection& s,
                                    const std::string& name) {
  return p.slices.indices_in(index_of(p, name), s.slices);
}

std::vector<int32_t> all_but(std::set<int32_t> keep, int32_t n) {
  std::vector<int32_t> out;
  for (int32_t e = 0; e < n; ++e)
    if (!keep.count(e)) out.push_back(e);
  return out;
}

std::string write_temp(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / ("layerfreeze-" + name);
  std::ofstream(path) << text;
  return path.string();
}

TEST(ExpertSelectors, FusedTensorsAreCutByExpertAndLayer) {
  auto c = test::compile_text(
      "rules:\n"
      "  - freeze: all\n"
      "  - unfreeze: {experts: [3, 7], layers: \"-2:\"}\n",
      model(kGranite));
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  EXPECT_EQ(p.slices.params.size(), 48u);  // input_linear and output_linear of 24 layers
  Selection s = p.state_at({0, 0});
  const std::string l23 = "model.layers.23.block_sparse_moe.";
  for (const char* t : {"input_linear.weight", "output_linear.weight"}) {
    EXPECT_EQ(frozen_experts(p, s, l23 + t), all_but({3, 7}, 32)) << t;
    EXPECT_TRUE(p.partial(s, index_of(p, l23 + t)));
    EXPECT_FALSE(s.params.test(index_of(p, l23 + t)));
    // Outside the layers asked for, the fused tensors stay frozen whole.
    const std::string l21 = "model.layers.21.block_sparse_moe." + std::string(t);
    EXPECT_TRUE(s.params.test(index_of(p, l21)));
    EXPECT_FALSE(p.partial(s, index_of(p, l21)));
  }
  EXPECT_TRUE(s.params.test(index_of(p, l23 + "router.layer.weight")));
  // 2 of 32 experts of 4 tensors train: 2/32 of their elements.
  const Inventory& inv = *p.inventory;
  int64_t fused = 0;
  for (const char* t : {"input_linear.weight", "output_linear.weight"})
    for (const char* l : {"22", "23"})
      fused +=
          inv.params()[index_of(p, "model.layers." + std::string(l) + ".block_sparse_moe." + t)]
              .numel;
  EXPECT_EQ(inv.total_numel() - p.frozen_numel(s), fused / 32 * 2);
}

TEST(ExpertSelectors, PerExpertModulesAreWholeTensors) {
  auto c = test::compile_text(
      "rules:\n"
      "  - freeze: all\n"
      "  - unfreeze: {experts: \"0:2\"}\n"
      "  - unfreeze: routers\n",
      model(kMixtral));
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  EXPECT_TRUE(p.slices.empty());
  Selection s = p.state_at({0, 0});
  for (const auto& q : p.inventory->params()) {
    const bool trains = (q.expert_part == ExpertPart::kRouted && q.expert < 2) ||
                        q.expert_part == ExpertPart::kRouter;
    EXPECT_EQ(s.params.test(index_of(p, q.name)), !trains) << q.name;
  }
}

TEST(ExpertSelectors, ComposeWithExceptAllOfAndStages) {
  auto c = test::compile_text(
      "rules:\n"
      "  - freeze: all\n"
      "  - unfreeze: {all_of: [{layers: [1]}, experts]}\n"
      "  - unfreeze: {layers: [2], except: {experts: [5]}}\n"
      "stages:\n"
      "  - at: {epoch: 1}\n"
      "    rules:\n"
      "      - freeze: {experts: [0, 1], layers: [1]}\n"
      "  - at: {epoch: 2}\n"
      "    rules:\n"
      "      - unfreeze: {experts: [0]}\n",
      model(kGranite));
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  const std::string in1 = "model.layers.1.block_sparse_moe.input_linear.weight";
  const std::string in2 = "model.layers.2.block_sparse_moe.input_linear.weight";
  const std::string in3 = "model.layers.3.block_sparse_moe.input_linear.weight";
  Selection s0 = p.state_at({0, 0});
  EXPECT_FALSE(s0.params.test(index_of(p, in1)));
  EXPECT_TRUE(frozen_experts(p, s0, in1).empty());
  EXPECT_EQ(frozen_experts(p, s0, in2), std::vector<int32_t>({5}));
  EXPECT_TRUE(s0.params.test(index_of(p, in3)));
  Selection s1 = p.state_at({1, 0});
  EXPECT_EQ(frozen_experts(p, s1, in1), std::vector<int32_t>({0, 1}));
  Selection s2 = p.state_at({2, 0});
  EXPECT_EQ(frozen_experts(p, s2, in1), std::vector<int32_t>({1}));
  EXPECT_EQ(frozen_experts(p, s2, in3), all_but({0}, 32));
  EXPECT_FALSE(s2.params.test(index_of(p, in3)));
  // The timeline reports mask changes, and the fingerprint covers them.
  auto points = p.timeline(p.horizon(4));
  ASSERT_EQ(points.size(), 3u);
  std::set<uint32_t> remasked(points[1].remasked.begin(), points[1].remasked.end());
  EXPECT_TRUE(remasked.count(index_of(p, in1)));
  EXPECT_FALSE(remasked.count(index_of(p, in2)));
  EXPECT_TRUE(std::set<uint32_t>(points[2].newly_unfrozen.begin(), points[2].newly_unfrozen.end())
                  .count(index_of(p, in3)));
  auto other = test::compile_text(
      "rules:\n  - freeze: all\n  - unfreeze: {all_of: [{layers: [1]}, experts]}\n"
      "  - unfreeze: {layers: [2], except: {experts: [6]}}\n",
      model(kGranite));
  ASSERT_TRUE(other.plan);
  EXPECT_NE(other.plan->fingerprint(), p.fingerprint());
}

TEST(ExpertSelectors, ReplayHandsTheSinkThePlansMasks) {
  auto c = test::compile_text(
      "rules:\n  - freeze: all\n  - unfreeze: {experts: \"0:4\", layers: \"0:3\"}\n"
      "stages:\n  - at: {step: 3}\n    rules:\n      - freeze: {experts: [1]}\n"
      "  - at: {step: 6}\n    rules:\n      - unfreeze: all\n",
      model(kGranite));
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  Replay replay(p);
  RecordingSink sink(p.inventory->params().size());
  replay.start(sink);
  for (int64_t step = 0; step < 9; ++step) {
    replay.move_to({0, step}, sink);
    Selection s = p.state_at({0, step});
    EXPECT_EQ(sink.state(), s.params) << "step " << step;
    std::map<uint32_t, std::vector<int32_t>> want;
    for (uint32_t i : p.slices.params)
      if (p.partial(s, i)) want[i] = p.slices.indices_in(i, s.slices);
    EXPECT_EQ(sink.masks(), want) << "step " << step;
  }
  // Backward: one jump lands in the earlier masks.
  replay.move_to({0, 4}, sink);
  EXPECT_EQ(sink.masks().size(), 6u);  // 2 fused tensors × layers 0-2, expert 1 frozen
}

// A sink that refuses its third mask change: the replay aborts, and the masks it holds are the
// ones before the failed change point.
class RefusingMaskSink : public RecordingSink {
 public:
  using RecordingSink::RecordingSink;
  void remask(uint32_t i, const std::vector<int32_t>& frozen_experts) override {
    if (armed && ++calls == 3) throw std::runtime_error("refused");
    RecordingSink::remask(i, frozen_experts);
  }
  bool armed = false;
  int calls = 0;
};

TEST(ExpertSelectors, AFailedChangeLeavesTheSinksMasksAsTheyWere) {
  auto c = test::compile_text(
      "rules:\n  - freeze: {experts: [2]}\n"
      "stages:\n  - at: {step: 3}\n    rules:\n      - freeze: {experts: [0, 1]}\n",
      model(kGranite));
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  Replay replay(p);
  RefusingMaskSink sink(p.inventory->params().size());
  replay.start(sink);
  const auto before = sink.masks();
  ASSERT_FALSE(before.empty());
  sink.armed = true;
  EXPECT_THROW(replay.move_to({0, 3}, sink), std::runtime_error);
  EXPECT_EQ(sink.masks(), before);
  // The replay stayed where it was: the next attempt applies the whole change point.
  sink.armed = false;
  replay.move_to({0, 3}, sink);
  for (const auto& [i, experts] : sink.masks()) EXPECT_EQ(experts, (std::vector<int32_t>{0, 1, 2}));
}

TEST(ExpertSelectors, BadIndicesNameTheExpertCount) {
  auto c = test::compile_text("rules:\n  - freeze: {experts: [3, 32]}\n", model(kGranite));
  EXPECT_FALSE(c.plan);
  EXPECT_NE(c.errors().find("expert index 32 is out of range"), std::string::npos) << c.errors();
  EXPECT_NE(c.errors().find("32 experts per layer"), std::string::npos);
  auto dense = test::compile_text("rules:\n  - freeze: {experts: [0]}\n", model("builtin:gpt2"));
  ASSERT_TRUE(dense.plan);  // nothing to select: the usual no-match warning
  EXPECT_NE(dense.errors().find("[no-match]"), std::string::npos) << dense.errors();
  auto bad =
      test::parse("rules:\n  - freeze: {experts: [1.5]}\n  - freeze: {experts: {form: x}}\n");
  EXPECT_FALSE(bad->strategy);
  EXPECT_NE(bad->errors().find("an expert index must be an integer"), std::string::npos)
      << bad->errors();
  EXPECT_NE(bad->errors().find("unknown key 'form'"), std::string::npos);
  // A bad slice says "expert", not "layer"; beside it, a layer slice still says "layer".
  auto slices = test::parse(
      "rules:\n  - freeze: {experts: \"0:x\", layers: \"::0\"}\n  - freeze: {experts: \"::0\"}\n");
  EXPECT_FALSE(slices->strategy);
  EXPECT_NE(slices->errors().find("bad expert slice '0:x'"), std::string::npos) << slices->errors();
  EXPECT_NE(slices->errors().find("layer slice '::0' needs a positive step"), std::string::npos)
      << slices->errors();
  EXPECT_NE(slices->errors().find("expert slice '::0' needs a positive step"), std::string::npos)
      << slices->errors();
}

TEST(ExpertSelectors, ProgressiveStagesRefuseToCutFusedTensors) {
  auto c = test::compile_text(
      "rules:\n  - freeze: all\nstages:\n  - progressive:\n      unfreeze: {experts: [1]}\n"
      "      start: {epoch: 1}\n      every: {epochs: 1}\n",
      model(kGranite));
  EXPECT_FALSE(c.plan);
  EXPECT_NE(c.errors().find("progressive-partial"), std::string::npos) << c.errors();
}

TEST(ExpertConfigFile, ReadWriteRoundTripInEsftsFormat) {
  Diagnostics d;
  ExpertConfig c;
  c.experts[10] = {33, 45};
  c.experts[2] = {57};
  std::string json = expert_config_json(c);
  EXPECT_EQ(json,
            "{\"experts\": {\"2\": [57], \"10\": [33, 45]}, \"shared_experts\": false, "
            "\"non_expert_modules\": false}\n");
  auto back = parse_expert_config(json, "x.json", d);
  ASSERT_TRUE(back) << format_diagnostics(d);
  EXPECT_EQ(back->experts, c.experts);
  // ESFT's own released config reads as it is: 26 mixture-of-experts layers (1-26).
  auto intent = read_expert_config(kIntent, "intent.json", discovered(kDeepSeekLite), d);
  ASSERT_TRUE(intent) << format_diagnostics(d);
  EXPECT_EQ(intent->experts.size(), 26u);
  EXPECT_EQ(intent->experts.at(1), std::vector<int32_t>({8, 26, 55, 6, 20}));
  EXPECT_FALSE(d.has_errors());
}

struct BadConfig {
  const char* text;
  const char* message;  // a part of the error
};

TEST(ExpertConfigFile, BadConfigsNameTheFileTheLayerAndTheCount) {
  const BadConfig cases[] = {
      {"{\"experts\": {\"27\": [1]}}", "layer 27 does not exist"},
      {"{\"experts\": {\"27\": [1]}}", "has 27 layers"},
      {"{\"experts\": {\"0\": [1]}}", "layer 0 has no routed experts"},
      {"{\"experts\": {\"3\": [64]}}", "layer 3: expert 64 is out of range"},
      {"{\"experts\": {\"3\": [64]}}", "64 experts per layer (0-63)"},
      {"{\"experts\": {\"3\": [\"a\"]}}", "layer 3: an expert index must be a non-negative"},
      {"{\"experts\": {\"3\": 5}}", "layer 3: experts must be a list"},
      {"{\"experts\": {\"x\": [1]}}", "'x' is not a layer index"},
      {"{\"experts\": {\"3\": [1]}, \"shared_experts\": \"yes\"}", "must be true or false"},
      {"{\"experts\": {\"3\": [1]}, \"shared_expert\": true}", "did you mean 'shared_experts'"},
      {"{\"layers\": {}}", "unknown key 'layers'"},
      {"[1, 2]", "must be a map"},
      {"{\"experts\": {\"3\": [1}", "yaml-syntax"},
  };
  const Inventory inv = discovered(kDeepSeekLite);
  for (const auto& bc : cases) {
    std::string path = write_temp("bad-expert-config.json", bc.text);
    Diagnostics d;
    // Named by the caller (not confined): these cases are about the file's content.
    auto c = read_expert_config(path, "bad.json", inv, d, {"rules.yaml", 4, 7}, false);
    EXPECT_FALSE(c) << bc.text;
    std::string text = format_diagnostics(d);
    EXPECT_NE(text.find(bc.message), std::string::npos) << bc.text << "\n" << text;
    EXPECT_NE(text.find("bad.json"), std::string::npos) << text;
  }
  // A config for another model: its first errors, then how many more.
  Diagnostics d;
  EXPECT_FALSE(read_expert_config(kIntent, "intent.json", discovered(kGranite), d));
  EXPECT_EQ(d.count(Severity::kError), 11u);
  EXPECT_NE(format_diagnostics(d).find("another model"), std::string::npos);
}

TEST(EsftPreset, PlansFromEsftsReleasedConfigOnItsOwnModel) {
  auto c = test::compile_preset("esft", kDeepSeekLite, {"expert_config='" + kIntent + "'"});
  ASSERT_TRUE(c.plan) << c.errors();
  const auto& p = *c.plan;
  Diagnostics d;
  auto config = read_expert_config(kIntent, "intent.json", *p.inventory, d);
  ASSERT_TRUE(config);
  Selection s = p.state_at({0, 0});
  for (size_t i = 0; i < p.inventory->params().size(); ++i) {
    const Param& q = p.inventory->params()[i];
    bool trains = false;
    if (q.expert_part == ExpertPart::kRouted) {
      auto it = config->experts.find(q.layer);
      trains = it != config->experts.end() &&
               std::count(it->second.begin(), it->second.end(), q.expert) > 0;
    }
    EXPECT_EQ(s.params.test(i), !trains) << q.name;
  }
  // shared_experts=true opens them too; non_expert_modules=true opens all but the experts.
  auto shared = test::compile_preset("esft", kDeepSeekLite,
                                     {"expert_config='" + kIntent + "'", "shared_experts=true"});
  ASSERT_TRUE(shared.plan) << shared.errors();
  const uint32_t se = index_of(*shared.plan, "model.layers.5.mlp.shared_experts.down_proj.weight");
  EXPECT_FALSE(shared.plan->state_at({0, 0}).params.test(se));
  EXPECT_TRUE(s.params.test(se));
  auto rest = test::compile_preset("esft", kDeepSeekLite,
                                   {"expert_config='" + kIntent + "'", "non_expert_modules=true"});
  ASSERT_TRUE(rest.plan) << rest.errors();
  Selection r = rest.plan->state_at({0, 0});
  EXPECT_FALSE(r.params.test(index_of(*rest.plan, "model.layers.5.self_attn.o_proj.weight")));
  EXPECT_FALSE(r.params.test(index_of(*rest.plan, "model.layers.5.mlp.gate.weight")));
  EXPECT_TRUE(r.params.test(se));
  EXPECT_TRUE(r.params.test(index_of(*rest.plan, "model.layers.1.mlp.experts.0.up_proj.weight")));
}

TEST(EsftPreset, FusedAndPerExpertLayoutsOfTheFixtures) {
  std::string granite = write_temp("esft-granite.json",
                                   "{\"experts\": {\"0\": [1, 2], \"23\": [31]}, "
                                   "\"shared_experts\": false, \"non_expert_modules\": false}");
  auto g = test::compile_preset("esft", kGranite, {"expert_config='" + granite + "'"});
  ASSERT_TRUE(g.plan) << g.errors();
  Selection s = g.plan->state_at({0, 0});
  EXPECT_EQ(frozen_experts(*g.plan, s, "model.layers.0.block_sparse_moe.output_linear.weight"),
            all_but({1, 2}, 32));
  EXPECT_EQ(frozen_experts(*g.plan, s, "model.layers.23.block_sparse_moe.input_linear.weight"),
            all_but({31}, 32));
  EXPECT_TRUE(
      s.params.test(index_of(*g.plan, "model.layers.5.block_sparse_moe.input_linear.weight")));
  EXPECT_NE(g.errors().find("expert-config-gaps"), std::string::npos);  // 22 layers left out

  std::string mixtral = write_temp("esft-mixtral.json", "{\"experts\": {\"7\": [0, 5]}}");
  auto m = test::compile_preset("esft", kMixtral, {"expert_config='" + mixtral + "'"});
  ASSERT_TRUE(m.plan) << m.errors();
  Selection ms = m.plan->state_at({0, 0});
  EXPECT_EQ(m.plan->inventory->total_numel() - m.plan->frozen_numel(ms),
            2 * 3 * 6144 * 16384);  // experts 0 and 5 of layer 7: w1, w2, w3
  EXPECT_TRUE(m.plan->slices.empty());

  std::string qwen = write_temp("esft-qwen.json", "{\"experts\": {\"2\": [0, 100]}}");
  auto q = test::compile_preset("esft", kQwenMoe, {"expert_config='" + qwen + "'"});
  ASSERT_TRUE(q.plan) << q.errors();
  EXPECT_LT(q.plan->frozen_numel(q.plan->state_at({0, 0})), q.plan->inventory->total_numel());
}

}  // namespace expert_selectors_test
}  // namespace layerfreeze
