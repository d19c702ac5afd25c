// Built-in architectures: published parameter counts, and what layer discovery finds on each.
#include "core/layer_discovery.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

Inventory discovered(const std::string& name) {
  Inventory inv = test::builtin(name);
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_FALSE(d.has_errors()) << format_diagnostics(d);
  return inv;
}

size_t count_role(const Inventory& inv, Role r) {
  size_t n = 0;
  for (const auto& p : inv.params()) n += p.role == r;
  return n;
}

struct BuiltinCase {
  const char* name;
  int64_t numel;  // published parameter count
  int32_t layers;
  const char* first_layer;
  const char* embeddings;  // one parameter that must have role embeddings
  const char* head;        // one parameter (or alias) that must have role head
};

class BuiltinTest : public ::testing::TestWithParam<BuiltinCase> {};

TEST_P(BuiltinTest, CountsLayersAndRoles) {
  const auto& c = GetParam();
  Inventory inv = discovered(c.name);
  EXPECT_EQ(inv.total_numel(), c.numel);
  EXPECT_EQ(inv.num_layers(), c.layers);
  ASSERT_GT(inv.num_layers(), 0);
  EXPECT_EQ(inv.layers[0].name, c.first_layer);
  auto e = inv.find(c.embeddings);
  ASSERT_TRUE(e) << c.embeddings;
  EXPECT_EQ(inv.params()[*e].role, Role::kEmbeddings);
  auto h = inv.find(c.head);
  ASSERT_TRUE(h) << c.head;
  const Param& hp = inv.params()[*h];
  bool head = hp.role == Role::kHead;
  for (Role r : hp.alias_roles) head = head || r == Role::kHead;
  EXPECT_TRUE(head) << c.head;
  // Every layer has parameters and every parameter has one role.
  for (const auto& l : inv.layers) EXPECT_FALSE(l.params.empty()) << l.name;
}

INSTANTIATE_TEST_SUITE_P(
    Published, BuiltinTest,
    ::testing::Values(BuiltinCase{"gpt2", 124439808, 12, "transformer.h.0",
                                  "transformer.wpe.weight", "lm_head.weight"},
                      BuiltinCase{"gpt2-medium", 354823168, 24, "transformer.h.0",
                                  "transformer.wte.weight", "transformer.ln_f.weight"},
                      BuiltinCase{"llama2-7b", 6738415616, 32, "model.layers.0",
                                  "model.embed_tokens.weight", "lm_head.weight"},
                      BuiltinCase{"llama2-70b", 68976648192, 80, "model.layers.0",
                                  "model.embed_tokens.weight", "model.norm.weight"},
                      BuiltinCase{"bert-base", 109482240, 12, "encoder.layer.0",
                                  "embeddings.LayerNorm.weight", "pooler.dense.weight"},
                      BuiltinCase{"t5-small", 60506624, 12, "encoder.block.0", "shared.weight",
                                  "decoder.final_layer_norm.weight"},
                      BuiltinCase{"mixtral-8x7b", 46702792704, 32, "model.layers.0",
                                  "model.embed_tokens.weight", "lm_head.weight"},
                      BuiltinCase{"resnet50", 25557032, 4, "layer1", "conv1.weight", "fc.weight"}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (auto& ch : n)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

TEST(Discovery, Gpt2TiedHeadIsOneEntryWithTwoRoles) {
  Inventory inv = discovered("gpt2");
  EXPECT_EQ(inv.params().size(), 148u);
  EXPECT_EQ(inv.num_names(), 149u);
  auto i = inv.find("lm_head.weight");
  ASSERT_TRUE(i);
  const Param& p = inv.params()[*i];
  EXPECT_EQ(p.name, "transformer.wte.weight");
  EXPECT_EQ(p.role, Role::kEmbeddings);
  ASSERT_EQ(p.alias_roles.size(), 1u);
  EXPECT_EQ(p.alias_roles[0], Role::kHead);
}

TEST(Discovery, MixtralExpertsBelongToTheirLayer) {
  Inventory inv = discovered("mixtral-8x7b");
  auto i = inv.find("model.layers.7.block_sparse_moe.experts.3.w1.weight");
  ASSERT_TRUE(i);
  EXPECT_EQ(inv.params()[*i].layer, 7);
  EXPECT_EQ(inv.stacks.size(), 1u);
  EXPECT_EQ(inv.layers[7].params.size(), 4u + 1u + 24u + 2u);
}

TEST(Discovery, T5StacksAreNumberedEncoderThenDecoder) {
  Inventory inv = discovered("t5-small");
  ASSERT_EQ(inv.stacks.size(), 2u);
  EXPECT_EQ(inv.stacks[0].container, "encoder.block");
  EXPECT_EQ(inv.stacks[1].container, "decoder.block");
  EXPECT_EQ(inv.layers[6].name, "decoder.block.0");
  // The relative attention bias inside block 0 is layer 0, not embeddings.
  EXPECT_EQ(
      inv.params()[*inv.find(
                       "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")]
          .layer,
      0);
  // Between the stacks: other, opening with the encoder's last block.
  const Param& enc_norm = inv.params()[*inv.find("encoder.final_layer_norm.weight")];
  EXPECT_EQ(enc_norm.role, Role::kOther);
  EXPECT_EQ(enc_norm.anchor_layer, 5);
  EXPECT_EQ(inv.params()[*inv.find("decoder.final_layer_norm.weight")].role, Role::kHead);
  // shared is tied three ways.
  const Param& shared = inv.params()[*inv.find("lm_head.weight")];
  EXPECT_EQ(shared.name, "shared.weight");
  EXPECT_EQ(shared.aliases.size(), 3u);
}

TEST(Discovery, T5StacksKeepOrderInNaturalNameOrder) {
  // As a safetensors header would list it: decoder.* before encoder.*.
  Inventory inv =
      test::with_facts(test::builtin("t5-small"), [](FactsBuilder& b) { b.sort_natural(); });
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  ASSERT_EQ(inv.stacks.size(), 2u);
  EXPECT_EQ(inv.stacks[0].container, "encoder.block");
  EXPECT_EQ(inv.params()[*inv.find("encoder.final_layer_norm.weight")].role, Role::kOther);
  EXPECT_EQ(inv.params()[*inv.find("encoder.final_layer_norm.weight")].anchor_layer, 5);
}

TEST(Discovery, ResNetStemIsEmbeddingsAndFcIsHead) {
  Inventory inv = discovered("resnet50");
  EXPECT_EQ(inv.layers[3].name, "layer4");
  EXPECT_EQ(inv.params()[*inv.find("bn1.bias")].role, Role::kEmbeddings);
  EXPECT_EQ(inv.params()[*inv.find("layer1.0.downsample.1.weight")].layer, 0);
  EXPECT_EQ(inv.params()[*inv.find("fc.bias")].role, Role::kHead);
  // Natural order puts fc before layer1; names still decide.
  Inventory sorted =
      test::with_facts(test::builtin("resnet50"), [](FactsBuilder& b) { b.sort_natural(); });
  Diagnostics d;
  discover_layers(sorted, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(sorted.params()[*sorted.find("fc.weight")].role, Role::kHead);
  EXPECT_EQ(sorted.params()[*sorted.find("conv1.weight")].role, Role::kEmbeddings);
}

TEST(Discovery, Moe100kHasAboutAHundredThousandTensors) {
  Inventory inv = discovered("moe-100k");
  EXPECT_GE(inv.params().size(), 100000u);
  EXPECT_EQ(inv.num_layers(), 68);
  EXPECT_EQ(
      inv.params()[*inv.find("model.layers.40.mlp.experts.255.down_proj.weight_scale_inv")].layer,
      40);
  EXPECT_EQ(count_role(inv, Role::kOther), 0u);
}

TEST(Discovery, FeaturesModelsHaveNoEmbeddings) {
  Inventory inv = test::names_inventory({"features.0.0.weight", "features.0.1.weight",
                                         "features.1.0.block.0.weight", "features.2.0.weight",
                                         "classifier.0.weight", "classifier.3.weight"});
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv.num_layers(), 3);
  EXPECT_EQ(count_role(inv, Role::kEmbeddings), 0u);
  EXPECT_EQ(inv.params()[*inv.find("classifier.3.weight")].role, Role::kHead);
}

TEST(Discovery, OptFinalNormRegisteredBeforeLayersIsHead) {
  Inventory inv = test::names_inventory(
      {"model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
       "model.decoder.final_layer_norm.weight", "model.decoder.layers.0.fc1.weight",
       "model.decoder.layers.1.fc1.weight", "lm_head.weight"});
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv.params()[*inv.find("model.decoder.final_layer_norm.weight")].role, Role::kHead);
  EXPECT_EQ(inv.params()[*inv.find("model.decoder.embed_positions.weight")].role,
            Role::kEmbeddings);
}

TEST(Discovery, VisionTransformerGluedIndices) {
  Inventory inv = test::names_inventory(
      {"class_token", "conv_proj.weight", "encoder.pos_embedding",
       "encoder.layers.encoder_layer_0.ln_1.weight", "encoder.layers.encoder_layer_0.mlp.0.weight",
       "encoder.layers.encoder_layer_1.ln_1.weight", "encoder.ln.weight", "heads.head.weight"});
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  ASSERT_EQ(inv.num_layers(), 2);
  EXPECT_EQ(inv.layers[1].name, "encoder.layers.encoder_layer_1");
  EXPECT_EQ(inv.params()[*inv.find("class_token")].role, Role::kEmbeddings);
  EXPECT_EQ(inv.params()[*inv.find("encoder.pos_embedding")].role, Role::kEmbeddings);
  EXPECT_EQ(inv.params()[*inv.find("encoder.ln.weight")].role, Role::kHead);
  EXPECT_EQ(inv.params()[*inv.find("heads.head.weight")].role, Role::kHead);
}

TEST(Discovery, UnknownArchitectureUsesGenericFallbackWithANote) {
  Inventory inv = test::names_inventory({"stem.w", "backbone.stages.0.conv.weight",
                                         "backbone.stages.1.conv.weight",
                                         "backbone.stages.2.conv.weight", "proj.weight"});
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv.num_layers(), 3);  // `stages` is a shipped pattern
  Inventory odd = test::names_inventory(
      {"a.w", "trunk.cells.0.w", "trunk.cells.1.w", "trunk.cells.2.w", "z.w"});
  discover_layers(odd, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(odd.num_layers(), 3);
  ASSERT_EQ(odd.notes.size(), 1u);
  EXPECT_NE(odd.notes[0].find("generic fallback"), std::string::npos);
}

TEST(Discovery, NoRepeatedBlocks) {
  Inventory inv = test::names_inventory({"embed.weight", "proj.weight", "head.weight"});
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv.num_layers(), 0);
  ASSERT_EQ(inv.notes.size(), 1u);
  EXPECT_NE(inv.notes[0].find("no repeated blocks"), std::string::npos);
}

TEST(Discovery, OverridePatternFromData) {
  Inventory inv =
      test::names_inventory({"tok.weight", "trunk.cells.0.w", "trunk.cells.1.w", "out.weight"});
  DiscoveryPatterns o;
  o.layers.push_back({"trunk\\.cells\\.#", {}});
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped().merged(o, false), d);
  ASSERT_EQ(inv.num_layers(), 2);
  EXPECT_EQ(inv.stacks[0].pattern, "trunk\\.cells\\.#");
  EXPECT_TRUE(inv.notes.empty());
}

TEST(Discovery, DescribeLayers) {
  EXPECT_EQ(describe_layers(discovered("llama2-7b")), "32 layers (model.layers.0–31)");
  EXPECT_EQ(describe_layers(discovered("t5-small")),
            "12 layers (encoder.block.0–5, decoder.block.0–5)");
  EXPECT_EQ(describe_layers(discovered("resnet50")), "4 layers (layer1–4)");
}

TEST(Inventory, NaturalOrder) {
  EXPECT_TRUE(natural_less("layers.2.w", "layers.10.w"));
  EXPECT_FALSE(natural_less("layers.10.w", "layers.2.w"));
  EXPECT_TRUE(natural_less("a", "a.b"));
  EXPECT_TRUE(natural_less("x.01", "x.1") || natural_less("x.1", "x.01"));
  EXPECT_FALSE(natural_less("same", "same"));
}

}  // namespace
}  // namespace layerfreeze

namespace layerfreeze {
namespace {

struct RoleCase {
  const char* name;
  Role role;
};

// Header-only sources list names in natural order; names must still decide.
void expect_roles_natural(std::vector<std::string> names, const std::vector<RoleCase>& want,
                          int layers) {
  Inventory inv =
      test::with_facts(test::names_inventory(names), [](FactsBuilder& b) { b.sort_natural(); });
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv.num_layers(), layers);
  for (const auto& w : want) {
    auto i = inv.find(w.name);
    ASSERT_TRUE(i) << w.name;
    EXPECT_EQ(role_name(inv.params()[*i].role), std::string(role_name(w.role))) << w.name;
  }
}

TEST(DiscoveryNatural, Gpt2WithoutTransformerPrefix) {
  expect_roles_natural({"wte.weight", "wpe.weight", "h.0.attn.c_attn.weight",
                        "h.1.attn.c_attn.weight", "ln_f.weight", "ln_f.bias"},
                       {{"wte.weight", Role::kEmbeddings},
                        {"wpe.weight", Role::kEmbeddings},
                        {"ln_f.bias", Role::kHead}},
                       2);
}

TEST(DiscoveryNatural, BloomEmbeddingNorm) {
  expect_roles_natural(
      {"transformer.word_embeddings.weight", "transformer.word_embeddings_layernorm.weight",
       "transformer.h.0.mlp.dense_h_to_4h.weight", "transformer.h.1.mlp.dense_h_to_4h.weight",
       "transformer.ln_f.weight"},
      {{"transformer.word_embeddings_layernorm.weight", Role::kEmbeddings},
       {"transformer.ln_f.weight", Role::kHead}},
      2);
}

TEST(DiscoveryNatural, OptProjections) {
  expect_roles_natural({"model.decoder.embed_tokens.weight", "model.decoder.project_in.weight",
                        "model.decoder.layers.0.fc1.weight", "model.decoder.layers.1.fc1.weight",
                        "model.decoder.project_out.weight"},
                       {{"model.decoder.project_in.weight", Role::kEmbeddings},
                        {"model.decoder.project_out.weight", Role::kHead}},
                       2);
}

TEST(DiscoveryNatural, WhisperStemAndStackNorms) {
  expect_roles_natural(
      {"model.encoder.conv1.weight", "model.encoder.embed_positions.weight",
       "model.encoder.layers.0.fc1.weight", "model.encoder.layers.1.fc1.weight",
       "model.encoder.layer_norm.weight", "model.decoder.embed_tokens.weight",
       "model.decoder.layers.0.fc1.weight", "model.decoder.layer_norm.weight", "proj_out.weight"},
      {{"model.encoder.conv1.weight", Role::kEmbeddings},
       {"model.encoder.embed_positions.weight", Role::kEmbeddings},
       {"model.encoder.layer_norm.weight", Role::kOther},
       {"model.decoder.layer_norm.weight", Role::kHead}},
      3);
}

TEST(DiscoveryNatural, HfVitAndBertHeads) {
  expect_roles_natural(
      {"vit.embeddings.cls_token", "vit.embeddings.patch_embeddings.projection.weight",
       "vit.encoder.layer.0.output.dense.weight", "vit.encoder.layer.1.output.dense.weight",
       "vit.layernorm.weight", "classifier.weight"},
      {{"vit.embeddings.cls_token", Role::kEmbeddings},
       {"vit.layernorm.weight", Role::kHead},
       {"classifier.weight", Role::kHead}},
      2);
  expect_roles_natural(
      {"bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.output.dense.weight",
       "bert.pooler.dense.weight", "cls.predictions.bias",
       "cls.predictions.transform.dense.weight"},
      {{"cls.predictions.bias", Role::kHead}, {"bert.pooler.dense.weight", Role::kHead}}, 1);
}

}  // namespace
}  // namespace layerfreeze

namespace layerfreeze {
namespace {

// rules/discovery.yaml is read by the same reader as a rules file's `discovery:` block, and
// nothing it says may be an error or a warning.
TEST(Discovery, TheShippedPatternsReadCleanly) {
  EXPECT_TRUE(DiscoveryPatterns::shipped_diagnostics().items().empty())
      << format_diagnostics(DiscoveryPatterns::shipped_diagnostics());
  EXPECT_FALSE(DiscoveryPatterns::shipped().layers.empty());
  EXPECT_FALSE(DiscoveryPatterns::shipped().towers.empty());
  EXPECT_EQ(DiscoveryPatterns::shipped().towers[0].modality, "audio");
}

}  // namespace
}  // namespace layerfreeze
