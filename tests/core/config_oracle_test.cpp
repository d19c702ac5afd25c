// The config as an oracle (docs/ARCHITECTURES.md): a checkpoint whose structure contradicts its
// config says so in every format and fails --strict; where the config tells which stack is the
// language model, discovery takes that split. Multi-token-prediction blocks, by name and by the
// config, are a role of their own that starts frozen. One test for each way a contradiction
// can happen.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "analysis/plan_summary.hpp"
#include "core/layer_discovery.hpp"
#include "print/plan_printer.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace oracle_test {

// Names of `layers` blocks under `container`, two tensors each.
void add_stack(std::vector<std::string>& names, const std::string& container, int layers) {
  for (int i = 0; i < layers; ++i)
    for (const char* leaf : {".attn.weight", ".mlp.weight"})
      names.push_back(container + "." + std::to_string(i) + leaf);
}

Inventory with_config(std::vector<std::string> names,
                      std::vector<std::pair<std::string, int64_t>> counts,
                      std::vector<std::string> modalities = {}, int64_t mtp = 0) {
  return test::with_facts(test::names_inventory(names, "oracle-model"), [&](FactsBuilder& b) {
    b.facts().config = "config.json";
    b.facts().config_layers = std::move(counts);
    b.facts().config_modalities = std::move(modalities);
    b.facts().config_mtp_layers = mtp;
  });
}

struct Discovered {
  Inventory inv;
  Diagnostics diags;
  size_t mismatches() const {
    size_t n = 0;
    for (const auto& d : diags.items()) n += d.code == "config-layers-mismatch";
    return n;
  }
};

Discovered discover(Inventory inv) {
  Discovered d{std::move(inv), {}};
  discover_layers(d.inv, DiscoveryPatterns::shipped(), d.diags);
  EXPECT_FALSE(d.diags.has_errors()) << format_diagnostics(d.diags);
  return d;
}

std::vector<std::string> lm_names(const std::string& prefix, int layers) {
  std::vector<std::string> n = {prefix + "model.embed_tokens.weight"};
  add_stack(n, prefix + "model.layers", layers);
  n.push_back(prefix + "model.norm.weight");
  n.push_back(prefix + "lm_head.weight");
  return n;
}

TEST(ConfigOracle, TheStackWithTheConfigsCountIsTheTrunkAndTheOtherAFedTower) {
  // llama3v's shape: an unnamed vision encoder, an unnamed resampler, a language model module.
  std::vector<std::string> names = {"enc.embeddings.patch.weight"};
  add_stack(names, "enc.encoder.layers", 5);
  names.push_back("glue.query");
  names.push_back("glue.attn.in_proj_weight");
  for (auto& n : lm_names("llm.", 4)) names.push_back(n);
  auto d = discover(with_config(names, {{"num_hidden_layers", 4}}, {"vision"}));
  EXPECT_EQ(d.mismatches(), 0u) << format_diagnostics(d.diags);
  EXPECT_EQ(d.inv.num_layers(), 4);
  ASSERT_EQ(d.inv.towers.size(), 1u);
  EXPECT_EQ(d.inv.towers[0].root, "enc");
  EXPECT_EQ(d.inv.towers[0].modality, "vision");
  EXPECT_NE(d.inv.towers[0].found_by.find("num_hidden_layers = 4"), std::string::npos);
  ASSERT_EQ(d.inv.connectors.size(), 1u);
  EXPECT_EQ(d.inv.connectors[0].root, "glue");
  EXPECT_EQ(d.inv.params()[*d.inv.find("llm.lm_head.weight")].role, Role::kHead);
  EXPECT_EQ(d.inv.params()[*d.inv.find("llm.model.embed_tokens.weight")].role, Role::kEmbeddings);
}

TEST(ConfigOracle, ASecondEncoderAndItsUnnamedProjectorAreATowerAndAConnector) {
  // A vision tower and a projector whose names say so, and beside them another encoder feeding
  // the language model through a projector no name says is one.
  std::vector<std::string> names = {"vision_tower.embeddings.patch.weight"};
  add_stack(names, "vision_tower.encoder.layers", 3);
  names.push_back("multi_modal_projector.linear.weight");
  add_stack(names, "second.blocks", 5);
  names.push_back("second_proj.weight");
  for (auto& n : lm_names("language_model.", 4)) names.push_back(n);
  auto d = discover(with_config(names, {{"text_config.num_hidden_layers", 4}}, {"vision"}));
  EXPECT_EQ(d.mismatches(), 0u) << format_diagnostics(d.diags);
  EXPECT_EQ(d.inv.num_layers(), 4);
  std::set<std::string> towers, connectors;
  for (const auto& t : d.inv.towers) towers.insert(t.root);
  for (const auto& c : d.inv.connectors) connectors.insert(c.root);
  EXPECT_EQ(towers, (std::set<std::string>{"vision_tower", "second"}));
  EXPECT_EQ(connectors, (std::set<std::string>{"multi_modal_projector", "second_proj"}));
  EXPECT_EQ(d.inv.params()[*d.inv.find("second_proj.weight")].role, Role::kConnector);
}

TEST(ConfigOracle, NoStackWithTheConfigsCountIsAContradiction) {
  auto d = discover(with_config(lm_names("", 6), {{"num_hidden_layers", 8}}));
  ASSERT_EQ(d.mismatches(), 1u);
  const std::string text = format_diagnostics(d.diags);
  EXPECT_NE(text.find("num_hidden_layers = 8"), std::string::npos) << text;
  EXPECT_NE(text.find("the trunk has 6 layers"), std::string::npos) << text;
  EXPECT_NE(text.find("model.layers (6)"), std::string::npos) << text;
}

TEST(ConfigOracle, TwoStacksWithTheConfigsCountAreAContradictionNotAGuess) {
  std::vector<std::string> names = lm_names("", 4);
  add_stack(names, "other.blocks", 4);
  auto d = discover(with_config(names, {{"num_hidden_layers", 4}}, {"vision"}));
  EXPECT_EQ(d.inv.towers.size(), 0u);
  EXPECT_EQ(d.mismatches(), 1u) << format_diagnostics(d.diags);
}

TEST(ConfigOracle, AnEncoderDecoderCountsEachStackApart) {
  std::vector<std::string> names = {"model.shared.weight"};
  add_stack(names, "model.encoder.layers", 12);
  add_stack(names, "model.decoder.layers", 6);
  auto ok = discover(with_config(names, {{"encoder_layers", 12}, {"decoder_layers", 6}}));
  EXPECT_EQ(ok.mismatches(), 0u) << format_diagnostics(ok.diags);
  EXPECT_EQ(ok.inv.num_layers(), 18);  // both stacks stay in the trunk: no tower
  EXPECT_TRUE(ok.inv.towers.empty());
  auto bad = discover(with_config(names, {{"encoder_layers", 12}, {"decoder_layers", 12}}));
  EXPECT_EQ(bad.mismatches(), 1u) << format_diagnostics(bad.diags);
}

TEST(ConfigOracle, AnEncoderBesideItsDecoderIsNeverATower) {
  // No encoder_layers key (num_hidden_layers only): still one trunk of two stacks.
  std::vector<std::string> names = {"model.shared.weight"};
  add_stack(names, "model.encoder.layers", 12);
  add_stack(names, "model.decoder.layers", 6);
  auto d = discover(with_config(names, {{"num_hidden_layers", 12}}));
  EXPECT_TRUE(d.inv.towers.empty());
  EXPECT_EQ(d.inv.num_layers(), 18);
}

TEST(ConfigOracle, AVisionCountNoStackHasIsAContradiction) {
  std::vector<std::string> names = {"visual.patch_embed.weight"};
  add_stack(names, "visual.blocks", 3);
  names.push_back("visual.merger.mlp.weight");
  for (auto& n : lm_names("", 4)) names.push_back(n);
  auto ok = discover(
      with_config(names, {{"num_hidden_layers", 4}, {"vision_config.depth", 3}}, {"vision"}));
  EXPECT_EQ(ok.mismatches(), 0u) << format_diagnostics(ok.diags);
  auto bad = discover(
      with_config(names, {{"num_hidden_layers", 4}, {"vision_config.depth", 5}}, {"vision"}));
  EXPECT_EQ(bad.mismatches(), 1u) << format_diagnostics(bad.diags);
}

TEST(ConfigOracle, ADualEncoderWhoseConfigCountsEveryStackAgrees) {
  // CLIP: text 4 and vision 6 layers, no connector; both stay in the trunk and nothing warns.
  std::vector<std::string> names = {"text_model.embeddings.token_embedding.weight"};
  add_stack(names, "text_model.encoder.layers", 4);
  names.push_back("vision_model.embeddings.patch_embedding.weight");
  add_stack(names, "vision_model.encoder.layers", 6);
  auto d = discover(with_config(
      names, {{"text_config.num_hidden_layers", 4}, {"vision_config.num_hidden_layers", 6}},
      {"vision"}));
  EXPECT_EQ(d.mismatches(), 0u) << format_diagnostics(d.diags);
  EXPECT_TRUE(d.inv.towers.empty());
  EXPECT_EQ(d.inv.num_layers(), 10);
}

TEST(ConfigOracle, TheContradictionReachesEveryFormatAndFailsStrict) {
  const std::string yaml = "layerfreeze: 1\nrules:\n  - freeze: {layers: {first: 2}}\n";
  Inventory inv = with_config(lm_names("", 6), {{"num_hidden_layers", 8}});
  auto c = test::compile_text(yaml, inv);
  ASSERT_TRUE(c.plan) << c.errors();
  auto s = summarize(*c.plan, OptimizerKind::AdamW, {0, -1});
  EXPECT_NE(plan_text(s).find("[config-layers-mismatch]"), std::string::npos);
  EXPECT_NE(plan_markdown(s).find("config-layers-mismatch"), std::string::npos);
  auto j = nlohmann::json::parse(plan_json(s));
  bool in_json = false;
  for (const auto& w : j["warnings"])
    in_json = in_json || w.dump().find("config-layers") != std::string::npos;
  EXPECT_TRUE(in_json) << j["warnings"].dump();
  auto strict = test::compile_text(yaml, inv, {}, std::nullopt, true);
  EXPECT_FALSE(strict.plan);
  EXPECT_NE(strict.errors().find("error: config 'config.json' says num_hidden_layers = 8"),
            std::string::npos)
      << strict.errors();
}

TEST(ConfigOracle, ATrunkPatternThatNamesNoStackIsSaid) {
  Diagnostics d;
  Inventory inv = with_config(lm_names("", 3), {{"num_hidden_layers", 3}});
  Diagnostics pd;
  auto patterns = DiscoveryPatterns::shipped().merged(
      parse_discovery_yaml("trunk: ['model\\.decoder\\.layers']\n", "fam.yaml", pd), false);
  ASSERT_FALSE(pd.has_errors()) << format_diagnostics(pd);
  discover_layers(inv, patterns, d);
  ASSERT_EQ(d.items().size(), 1u) << format_diagnostics(d);
  EXPECT_EQ(d.items()[0].code, "trunk-unmatched");
  EXPECT_NE(d.items()[0].message.find("(model.layers)"), std::string::npos) << d.items()[0].message;
  EXPECT_EQ(inv.num_layers(), 3);
}

TEST(Mtp, ABlockNamedSoIsItsOwnRoleAndStartsFrozen) {
  // MiMo: model.mtp_layers.0 after the last layer would be "head" by position.
  std::vector<std::string> names = lm_names("", 4);
  names.push_back("model.mtp_layers.0.input_layernorm.weight");
  names.push_back("model.mtp_layers.0.self_attn.q_proj.weight");
  names.push_back("model.mtp_layers.0.final_layernorm.weight");
  auto d = discover(with_config(names, {{"num_hidden_layers", 4}}, {}, 1));
  EXPECT_EQ(d.mismatches(), 0u) << format_diagnostics(d.diags);
  EXPECT_EQ(d.inv.num_layers(), 4);
  for (const auto& p : d.inv.params())
    EXPECT_EQ(p.role == Role::kMtp, p.name.rfind("model.mtp_layers.", 0) == 0) << p.name;

  // Presets never train it; `mtp` does.
  auto all = test::compile_text("layerfreeze: 1\nrules:\n  - unfreeze: all\n", d.inv);
  ASSERT_TRUE(all.plan) << all.errors();
  auto frozen = test::frozen_names(*all.plan);
  EXPECT_EQ(frozen.size(), 3u);
  auto bitfit = test::compile_preset("bitfit", "builtin:gpt2");  // compiles: the role is known
  ASSERT_TRUE(bitfit.plan) << bitfit.errors();
  auto mtp = test::compile_text("layerfreeze: 1\nrules:\n  - unfreeze: mtp\n", d.inv);
  ASSERT_TRUE(mtp.plan) << mtp.errors();
  EXPECT_TRUE(test::frozen_names(*mtp.plan).empty());
  auto regex = test::compile_text(
      "layerfreeze: 1\nrules:\n  - freeze: all\n  - unfreeze: {regex: 'model\\.mtp_layers\\..*'}\n",
      d.inv);
  ASSERT_TRUE(regex.plan) << regex.errors();
  EXPECT_EQ(test::frozen_names(*regex.plan).size(), names.size() - 3);
  auto leaf = test::compile_text(
      "layerfreeze: 1\nrules:\n  - freeze: all\n  - unfreeze: {leaf: weight}\n", d.inv);
  ASSERT_TRUE(leaf.plan) << leaf.errors();
  EXPECT_EQ(test::frozen_names(*leaf.plan).size(), 3u);
}

TEST(Mtp, TheConfigsExtraLayersAreMtpNotLayers) {
  // DeepSeek-V3 / GLM-4.5 without a family: model.layers.0..4 where the config says 4 layers
  // and one next-token-prediction layer.
  auto d = discover(with_config(lm_names("", 5), {{"num_hidden_layers", 4}}, {}, 1));
  EXPECT_EQ(d.mismatches(), 0u) << format_diagnostics(d.diags);
  EXPECT_EQ(d.inv.num_layers(), 4);
  for (const auto& p : d.inv.params())
    EXPECT_EQ(p.role == Role::kMtp, p.name.rfind("model.layers.4.", 0) == 0) << p.name;
  EXPECT_EQ(d.inv.params()[*d.inv.find("lm_head.weight")].role, Role::kHead);
  // Without the config's key, five layers contradict its count.
  auto bad = discover(with_config(lm_names("", 5), {{"num_hidden_layers", 4}}));
  EXPECT_EQ(bad.inv.num_layers(), 5);
  EXPECT_EQ(bad.mismatches(), 1u);
}

}  // namespace oracle_test
}  // namespace layerfreeze
