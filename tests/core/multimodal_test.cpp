// Vision-language models: trunk, towers and connectors (docs/ARCHITECTURES.md). Real published
// indexes and configs (tests/data/real-checkpoints); the expectations come from each model's own
// structure — its config's language-model layer count, the modules its code defines — not from
// what the tool printed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "analysis/plan_summary.hpp"
#include "core/layer_discovery.hpp"
#include "layerfreeze/model_source.hpp"
#include "print/inventory_printer.hpp"
#include "print/plan_printer.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

const std::string kVlmData = LAYERFREEZE_TEST_DATA;

struct VlmCase {
  std::string folder;
  std::string trunk;                                    // the language model's layer container
  int32_t text_layers;                                  // its config's num_hidden_layers
  std::vector<std::pair<std::string, int32_t>> towers;  // root, layers — input first
  std::vector<std::string> connectors;                  // roots
  std::vector<std::string> head;        // the language model's final norm and output layer
  std::vector<std::string> embeddings;  // the language model's token embeddings
};

void PrintTo(const VlmCase& c, std::ostream* os) { *os << c.folder; }

const std::vector<VlmCase>& cases() {
  static const std::vector<VlmCase> c = {
      // Qwen2VLForConditionalGeneration: visual (patch_embed, blocks, merger) → model → lm_head.
      {"olmocr-qwen2-vl-7b",
       "model.layers",
       28,
       {{"visual", 32}},
       {"visual.merger"},
       {"model.norm.weight", "lm_head.weight"},
       {"model.embed_tokens.weight"}},
      // DeepSeek-OCR2: SAM ViT-B → a Qwen2 encoder → linear projector → DeepSeek-V2 language model
      // (language_config.num_hidden_layers = 12). view_seperator is a learned token between views.
      {"deepseek-ocr2",
       "model.layers",
       12,
       {{"model.sam_model", 12}, {"model.qwen2_model", 24}},
       {"model.projector", "model.view_seperator"},
       {"model.norm.weight", "lm_head.weight"},
       {"model.embed_tokens.weight"}},
      // Molmo: vision_backbone (image_vit; image_pooling_2d, image_projector and pad_embed are
      // its connector parameters) → transformer (blocks, ln_f, ff_out).
      {"molmo-7b-d-nf4",
       "model.transformer.blocks",
       28,
       {{"model.vision_backbone", 23}},
       {"model.vision_backbone.image_pooling_2d", "model.vision_backbone.image_projector",
        "model.vision_backbone.pad_embed"},
       {"model.transformer.ln_f.weight", "model.transformer.ff_out.weight"},
       {"model.transformer.wte.embedding", "model.transformer.wte.new_embedding"}},
      // MiniCPM-V 2.6: vpm (SigLIP) → resampler → Qwen2 language model.
      {"minicpm-v-2_6",
       "model.layers",
       28,
       {{"vpm", 27}},
       {"resampler"},
       {"model.norm.weight", "lm_head.weight"},
       {"model.embed_tokens.weight"}},
      // llama3v (modeling_llama3v.py): `vison` (a SigLIP vision model: embeddings, encoder.layers,
      // post_layernorm) → `projection` (a resampler: query, attn, kv_proj, ln_*, proj) → `llm`
      // (LlamaForCausalLM). No name says tower or connector; the config's num_hidden_layers = 32
      // says which stack is the language model.
      {"llama3v",
       "llm.model.layers",
       32,
       {{"vison", 27}},
       {"projection"},
       {"llm.model.norm.weight", "llm.lm_head.weight"},
       {"llm.model.embed_tokens.weight"}},
      // Logics-Thinking: two vision towers side by side (vision_towers.0 a ConvNeXt of 4 stages,
      // vision_towers.1 SigLIP2 with 26 layers; their features concatenated: mm_hidden_size
      // 4224) → mm_projector (and the learned image_newline) → Qwen3 language model (36 layers).
      {"logics-thinking-8b",
       "model.layers",
       36,
       {{"model.vision_tower.vision_towers.0", 4}, {"model.vision_tower.vision_towers.1", 26}},
       {"model.mm_projector", "model.image_newline"},
       {"model.norm.weight", "lm_head.weight"},
       {"model.embed_tokens.weight"}},
  };
  return c;
}

class Vlm : public ::testing::TestWithParam<VlmCase> {
 protected:
  Inventory load() {
    Diagnostics d;
    auto inv = load_model(kVlmData + "/real-checkpoints/" + GetParam().folder, d);
    EXPECT_TRUE(inv) << format_diagnostics(d);
    if (!inv) return {};
    discover_layers(*inv, DiscoveryPatterns::shipped(), d);
    EXPECT_EQ(d.count(Severity::kError), 0u) << format_diagnostics(d);
    return std::move(*inv);
  }
  test::Compiled plan(const std::string& preset, std::vector<std::string> sets = {}) {
    return test::compile_preset(preset, kVlmData + "/real-checkpoints/" + GetParam().folder,
                                std::move(sets));
  }
  // Names of the trunk's layers [first, last].
  bool in_trunk_layers(const std::string& name, int32_t first, int32_t last) {
    const std::string& t = GetParam().trunk;
    if (name.compare(0, t.size() + 1, t + ".") != 0) return false;
    int32_t l = std::stoi(name.substr(t.size() + 1));
    return l >= first && l <= last;
  }
  bool in_tower(const std::string& name) {
    for (const auto& [root, _] : GetParam().towers)
      if (name.rfind(root + ".", 0) == 0) return !in_connector(name);
    return false;
  }
  bool in_connector(const std::string& name) {
    for (const auto& c : GetParam().connectors)
      if (name == c || name.rfind(c + ".", 0) == 0) return true;
    return false;
  }
  std::set<std::string> frozen_names(const CompiledPlan& p, const Time& t) {
    std::set<std::string> out;
    p.frozen_at(t).for_each([&](size_t i) { out.insert(p.inventory->params()[i].name); });
    return out;
  }
};

TEST_P(Vlm, TrunkTowersAndConnectorsAreTheModelsOwn) {
  const VlmCase& c = GetParam();
  Inventory inv = load();
  EXPECT_EQ(inv.num_layers(), c.text_layers);
  ASSERT_EQ(inv.towers.size(), c.towers.size());
  for (size_t t = 0; t < c.towers.size(); ++t) {
    EXPECT_EQ(inv.towers[t].root, c.towers[t].first);
    EXPECT_EQ(inv.towers[t].num_layers, c.towers[t].second);
    EXPECT_EQ(inv.towers[t].modality, "vision");
  }
  std::vector<std::string> connectors;
  for (const auto& k : inv.connectors) connectors.push_back(k.root);
  EXPECT_EQ(std::set<std::string>(connectors.begin(), connectors.end()),
            std::set<std::string>(c.connectors.begin(), c.connectors.end()));
  for (const auto& h : c.head) EXPECT_EQ(inv.params()[*inv.find(h)].role, Role::kHead) << h;
  for (const auto& e : c.embeddings)
    EXPECT_EQ(inv.params()[*inv.find(e)].role, Role::kEmbeddings) << e;
  for (const auto& p : inv.params()) {
    if (in_connector(p.name)) {
      EXPECT_EQ(p.role, Role::kConnector) << p.name;
    } else if (in_tower(p.name)) {
      EXPECT_EQ(p.role, Role::kTower) << p.name;
    } else {
      EXPECT_TRUE(p.role != Role::kTower && p.role != Role::kConnector) << p.name;
    }
    // Trunk layers are numbered 0..L-1 whatever comes before them.
    if (p.role == Role::kLayer) {
      EXPECT_TRUE(in_trunk_layers(p.name, 0, c.text_layers - 1)) << p.name;
    }
  }
  // Data-flow order: every tower parameter, then the connectors, then the trunk.
  int stage = 0;
  for (const auto& p : inv.params()) {
    int s = p.role == Role::kTower ? 0 : p.role == Role::kConnector ? 1 : 2;
    EXPECT_GE(s, stage) << p.name << " is out of data-flow order";
    stage = std::max(stage, s);
  }
}

TEST_P(Vlm, FreezeExceptLastTwoTrainsTheLastTwoLanguageLayersOnly) {
  const VlmCase& c = GetParam();
  auto r = plan("freeze_except_last_n", {"n=2"});
  ASSERT_TRUE(r.plan) << format_diagnostics(r.diags);
  auto frozen = frozen_names(*r.plan, {0, 0});
  for (const auto& p : r.plan->inventory->params())
    EXPECT_EQ(frozen.count(p.name) == 0,
              in_trunk_layers(p.name, c.text_layers - 2, c.text_layers - 1))
        << p.name;
  auto j = nlohmann::json::parse(plan_json(summarize(*r.plan, OptimizerKind::AdamW, {0, -1})));
  EXPECT_EQ(j["model"]["num_layers"], c.text_layers);
}

TEST_P(Vlm, LpLoraFreezesTheTowersAndTheFirstHalfOfTheLanguageModel) {
  const VlmCase& c = GetParam();
  auto r = plan("lp_lora");
  ASSERT_TRUE(r.plan) << format_diagnostics(r.diags);
  auto frozen = frozen_names(*r.plan, {0, 0});
  const int32_t half = static_cast<int32_t>(std::floor(0.5 * c.text_layers));
  std::set<std::string> emb(c.embeddings.begin(), c.embeddings.end());
  for (const auto& p : r.plan->inventory->params()) {
    bool want = in_tower(p.name) || in_trunk_layers(p.name, 0, half - 1) || emb.count(p.name) > 0;
    EXPECT_EQ(frozen.count(p.name) > 0, want) << p.name;
  }
}

TEST_P(Vlm, GradualUnfreezingStartsWithTheLanguageModelsHeadOnly) {
  const VlmCase& c = GetParam();
  auto r = plan("gradual_unfreeze", {"total_epochs=4"});
  ASSERT_TRUE(r.plan) << format_diagnostics(r.diags);
  auto frozen = frozen_names(*r.plan, {0, 0});
  std::set<std::string> trainable;
  for (const auto& p : r.plan->inventory->params())
    if (!frozen.count(p.name)) trainable.insert(p.name);
  EXPECT_EQ(trainable, std::set<std::string>(c.head.begin(), c.head.end()));
}

INSTANTIATE_TEST_SUITE_P(RealCheckpoints, Vlm, ::testing::ValuesIn(cases()), [](const auto& info) {
  std::string n = info.param.folder;
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

Inventory discovered_names(Inventory inv,
                           const DiscoveryPatterns& patterns = DiscoveryPatterns::shipped()) {
  Diagnostics d;
  discover_layers(inv, patterns, d);
  return inv;
}

// A LLaVA index as transformers v5 saves it (`model.language_model.layers`, `model.vision_tower`)
// where the family describes the published layout (`language_model.model.layers`,
// `vision_tower`): the family's structure knows both, so the parts are right and nothing says
// the trunk pattern matched nothing; that the names differ from the family's is said.
TEST(Multimodal, AFamilysStructureKnowsBothLayoutsOfItsCheckpoints) {
  Diagnostics d;
  auto inv = load_model(kVlmData + "/layouts/llava-transformers-v5", d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_EQ(inv->facts().family, "llava");
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv->num_layers(), 2);
  ASSERT_EQ(inv->towers.size(), 1u);
  EXPECT_EQ(inv->towers[0].root, "model.vision_tower");
  ASSERT_EQ(inv->connectors.size(), 1u);
  EXPECT_EQ(inv->connectors[0].root, "model.multi_modal_projector");
  bool names_differ = false;
  for (const auto& w : d.items()) {
    EXPECT_NE(w.code, "trunk-unmatched") << w.message;
    names_differ = names_differ || w.code == "config-names-differ";
  }
  EXPECT_TRUE(names_differ);
}

TEST(Multimodal, AManifestKeepsWhatTheConfigSaidOfTheTowers) {
  // DeepSeek-OCR2's Qwen2 encoder is a tower only by its config; `inspect --format json` written
  // and read back must still say so.
  Diagnostics d;
  auto inv = load_model(kVlmData + "/real-checkpoints/deepseek-ocr2", d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  auto back = parse_manifest(inventory_json(*inv), "ocr2.json", d);
  ASSERT_TRUE(back) << format_diagnostics(d);
  discover_layers(*back, DiscoveryPatterns::shipped(), d);
  ASSERT_EQ(back->towers.size(), 2u);
  EXPECT_EQ(back->towers[1].root, "model.qwen2_model");
  EXPECT_EQ(back->num_layers(), 12);
}

TEST(Multimodal, Qwen3VlInAHeaderIsPutInDataFlowOrder) {
  // Qwen3-VL's names (transformers' Qwen3VLForConditionalGeneration): the vision blocks, a
  // merger and the DeepStack mergers that feed vision features into early language layers.
  std::vector<std::string> names = {"lm_head.weight",
                                    "model.language_model.embed_tokens.weight",
                                    "model.language_model.norm.weight",
                                    "model.visual.patch_embed.proj.weight",
                                    "model.visual.pos_embed.weight",
                                    "model.visual.merger.norm.weight",
                                    "model.visual.merger.linear_fc1.weight"};
  for (int l = 0; l < 4; ++l)
    names.push_back("model.language_model.layers." + std::to_string(l) + ".mlp.up_proj.weight");
  for (int l = 0; l < 3; ++l)
    names.push_back("model.visual.blocks." + std::to_string(l) + ".mlp.linear_fc1.weight");
  for (int l = 0; l < 2; ++l)
    names.push_back("model.visual.deepstack_merger_list." + std::to_string(l) +
                    ".linear_fc1.weight");
  // In natural name order, as a safetensors header gives it.
  Inventory header =
      test::with_facts(test::names_inventory(names), [](FactsBuilder& b) { b.sort_natural(); });
  auto c = test::compile_text(
      "layerfreeze: 1\nname: t\nextends: preset:freeze_except_last_n\nwith: {n: 1}\n", header);
  ASSERT_TRUE(c.plan) << format_diagnostics(c.diags);
  const Inventory& inv = *c.plan->inventory;
  ASSERT_EQ(inv.towers.size(), 1u);
  EXPECT_EQ(inv.towers[0].root, "model.visual");
  EXPECT_EQ(inv.towers[0].num_layers, 3);
  EXPECT_EQ(inv.num_layers(), 4);
  EXPECT_EQ(inv.connectors.size(), 2u);
  // Data flow: the tower (patch and position embeddings, then its blocks), the connectors, the
  // language model's embeddings, its layers, its head.
  EXPECT_EQ(inv.params().front().name, "model.visual.patch_embed.proj.weight");
  EXPECT_EQ(inv.params()[*inv.find("model.language_model.embed_tokens.weight")].role,
            Role::kEmbeddings);
  EXPECT_EQ(inv.params()[*inv.find("model.language_model.norm.weight")].role, Role::kHead);
  EXPECT_EQ(inv.params()[*inv.find("model.visual.deepstack_merger_list.1.linear_fc1.weight")].role,
            Role::kConnector);
  std::vector<std::string> order;
  for (const auto& p : inv.params()) order.push_back(p.name);
  auto pos = [&](const std::string& n) {
    return std::find(order.begin(), order.end(), n) - order.begin();
  };
  EXPECT_LT(pos("model.visual.blocks.2.mlp.linear_fc1.weight"),
            pos("model.visual.merger.linear_fc1.weight"));
  EXPECT_LT(pos("model.visual.merger.linear_fc1.weight"),
            pos("model.language_model.embed_tokens.weight"));
  EXPECT_LT(pos("model.language_model.layers.3.mlp.up_proj.weight"), pos("lm_head.weight"));
  std::set<std::string> trainable;
  Bitset f = c.plan->frozen_at({0, 0});
  for (size_t i = 0; i < inv.params().size(); ++i)
    if (!f.test(i)) trainable.insert(inv.params()[i].name);
  EXPECT_EQ(trainable, (std::set<std::string>{"model.language_model.layers.3.mlp.up_proj.weight"}));
}

TEST(Multimodal, ADualEncoderWithoutAConnectorKeepsBothStacksInItsTrunk) {
  // CLIP: text and vision encoders read in parallel, no connector.
  Inventory inv = discovered_names(test::names_inventory(
      {"text_model.embeddings.token_embedding.weight", "text_model.encoder.layers.0.mlp.fc1.weight",
       "text_model.encoder.layers.1.mlp.fc1.weight", "text_model.final_layer_norm.weight",
       "vision_model.embeddings.patch_embedding.weight",
       "vision_model.encoder.layers.0.mlp.fc1.weight",
       "vision_model.encoder.layers.1.mlp.fc1.weight", "vision_model.post_layernorm.weight",
       "visual_projection.weight", "text_projection.weight", "logit_scale"}));
  EXPECT_TRUE(inv.towers.empty());
  EXPECT_EQ(inv.num_layers(), 4);
  bool noted = false;
  for (const auto& n : inv.notes) noted = noted || n.find("no connector") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(Multimodal, AVisionOnlyModelKeepsItsStackAsTheTrunk) {
  Inventory inv = discovered_names(test::names_inventory(
      {"vision_model.embeddings.patch_embedding.weight",
       "vision_model.encoder.layers.0.mlp.fc1.weight",
       "vision_model.encoder.layers.1.mlp.fc1.weight", "multi_modal_projector.linear_1.weight"}));
  EXPECT_TRUE(inv.towers.empty());
  EXPECT_EQ(inv.num_layers(), 2);
}

TEST(Multimodal, LlavaNamesInRegistrationOrderAndAStackInsideTheConnector) {
  Inventory names = test::names_inventory(
      {"vision_tower.vision_model.embeddings.patch_embedding.weight",
       "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
       "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight",
       "vision_tower.vision_model.post_layernorm.weight", "multi_modal_projector.layers.0.weight",
       "multi_modal_projector.layers.1.weight", "language_model.model.embed_tokens.weight",
       "language_model.model.layers.0.mlp.up_proj.weight",
       "language_model.model.layers.1.mlp.up_proj.weight",
       "language_model.model.layers.2.mlp.up_proj.weight", "language_model.model.norm.weight",
       "language_model.lm_head.weight"});
  Inventory inv = discovered_names(names);
  ASSERT_EQ(inv.towers.size(), 1u);
  EXPECT_EQ(inv.towers[0].root, "vision_tower");
  EXPECT_EQ(inv.num_layers(), 3);
  // The projector's own `layers.N` are the connector's, not a stack.
  EXPECT_EQ(inv.params()[*inv.find("multi_modal_projector.layers.1.weight")].role,
            Role::kConnector);
  EXPECT_EQ(inv.params()[*inv.find("language_model.model.norm.weight")].role, Role::kHead);
  EXPECT_EQ(inv.params()[*inv.find("vision_tower.vision_model.post_layernorm.weight")].role,
            Role::kTower);
  // Registration order is kept (a live module's tensors are bound by position).
  EXPECT_EQ(inv.params()[0].name, names.params()[0].name);
  EXPECT_EQ(describe_layers(inv),
            "3 layers (language_model.model.layers.0–2) + vision tower 'vision_tower' (2 layers, "
            "vision_tower.vision_model.encoder.layers.0–1)");
}

TEST(Multimodal, AnAudioTowerIsNamedSo) {
  Inventory inv = discovered_names(test::names_inventory(
      {"audio_tower.conv1.weight", "audio_tower.layers.0.fc1.weight",
       "audio_tower.layers.1.fc1.weight", "multi_modal_projector.linear.weight",
       "language_model.model.embed_tokens.weight",
       "language_model.model.layers.0.mlp.up_proj.weight", "language_model.model.norm.weight",
       "language_model.lm_head.weight"}));
  ASSERT_EQ(inv.towers.size(), 1u);
  EXPECT_EQ(inv.towers[0].modality, "audio");
  EXPECT_EQ(inv.num_layers(), 1);
}

TEST(Multimodal, ARulesFilesTrunkMakesEveryOtherStackATower) {
  // Names no shipped pattern knows as a tower: the rules file says which stack is the trunk.
  auto c = test::compile_text(
      "layerfreeze: 1\nname: t\ndiscovery:\n  trunk: ['lm\\.layers']\n  connectors: ['bridge']\n"
      "rules:\n  - freeze: tower\n  - freeze: {stack: vision, layers: '0:1'}\n",
      test::names_inventory({"pixels.stem.weight", "pixels.layers.0.w", "pixels.layers.1.w",
                             "bridge.w", "lm.embed_tokens.weight", "lm.layers.0.w", "lm.layers.1.w",
                             "lm.layers.2.w", "lm.norm.weight", "lm_head.weight"}));
  ASSERT_TRUE(c.plan) << format_diagnostics(c.diags);
  const Inventory& inv = *c.plan->inventory;
  ASSERT_EQ(inv.towers.size(), 1u);
  EXPECT_EQ(inv.towers[0].root, "pixels");
  EXPECT_EQ(inv.num_layers(), 3);
  EXPECT_EQ(inv.params()[*inv.find("bridge.w")].role, Role::kConnector);
}

TEST(Multimodal, StackSelectorsReachATowersLayersByModality) {
  auto c = test::compile_text(
      "layerfreeze: 1\nname: t\nrules:\n  - freeze: {stack: vision, layers: '-1:'}\n"
      "  - freeze: {layers: [0]}\n",
      test::names_inventory({"visual.patch_embed.w", "visual.blocks.0.w", "visual.blocks.1.w",
                             "visual.merger.w", "model.embed_tokens.weight", "model.layers.0.w",
                             "model.layers.1.w", "model.norm.weight", "lm_head.weight"}));
  ASSERT_TRUE(c.plan) << format_diagnostics(c.diags);
  std::set<std::string> frozen;
  c.plan->frozen_at({0, 0}).for_each(
      [&](size_t i) { frozen.insert(c.plan->inventory->params()[i].name); });
  EXPECT_EQ(frozen, (std::set<std::string>{"visual.blocks.1.w", "model.layers.0.w"}));
  // A wrong stack name lists the towers too.
  auto bad = test::compile_text(
      "layerfreeze: 1\nname: t\nrules:\n  - freeze: {stack: audio}\n",
      test::names_inventory({"visual.blocks.0.w", "visual.merger.w", "model.layers.0.w"}));
  EXPECT_FALSE(bad.plan);
  EXPECT_NE(format_diagnostics(bad.diags).find("vision (the tower 'visual')"), std::string::npos)
      << format_diagnostics(bad.diags);
}

TEST(Multimodal, TowerAndConnectorSelectorsDoNotWarnOnAModelWithoutThem) {
  auto c = test::compile_preset("lp_lora", "builtin:gpt2");
  ASSERT_TRUE(c.plan);
  for (const auto& w : c.plan->warnings) EXPECT_NE(w.code, "no-match") << w.message;
}

}  // namespace
}  // namespace layerfreeze

namespace layerfreeze {
namespace {

// The multimodal table of docs/ARCHITECTURES.md, checked row by row against discovery on the
// real checkpoints it names (paths under tests/data).
std::string trimmed(std::string s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '`')) s.erase(s.begin());
  while (!s.empty() && (s.back() == ' ' || s.back() == '`')) s.pop_back();
  return s;
}

std::vector<std::string> multimodal_row(const Inventory& inv) {
  std::string trunk, towers, connectors;
  for (const auto& st : inv.stacks)
    if (st.tower < 0)
      trunk +=
          (trunk.empty() ? "" : ", ") + st.container + " (" + std::to_string(st.num_layers) + ")";
  for (const auto& t : inv.towers)
    towers += (towers.empty() ? "" : " → ") + t.root + " (" + t.modality + ", " +
              std::to_string(t.num_layers) + ")";
  for (const auto& c : inv.connectors) connectors += (connectors.empty() ? "" : ", ") + c.root;
  std::set<std::string> emb, head;
  for (const auto& p : inv.params()) {
    std::string owner = p.module_path().empty() ? p.name : p.module_path();
    if (p.role == Role::kEmbeddings) emb.insert(owner);
    if (p.role == Role::kHead) head.insert(owner);
  }
  auto join = [](const std::set<std::string>& s) {
    std::string out;
    for (const auto& x : s) out += (out.empty() ? "" : ", ") + x;
    return out.empty() ? std::string("—") : out;
  };
  return {trunk, towers.empty() ? "—" : towers, connectors.empty() ? "—" : connectors, join(emb),
          join(head)};
}

TEST(ArchitecturesDoc, EveryMultimodalRowMatchesDiscovery) {
  std::ifstream in(std::string(LAYERFREEZE_DOCS) + "/ARCHITECTURES.md");
  ASSERT_TRUE(in) << "docs/ARCHITECTURES.md is missing";
  std::string line;
  bool inside = false;
  size_t rows = 0;
  while (std::getline(in, line)) {
    if (line.find("multimodal-table: begin") != std::string::npos) inside = true;
    if (line.find("multimodal-table: end") != std::string::npos) break;
    if (!inside || line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> cells;
    for (size_t start = 1, bar; (bar = line.find('|', start)) != std::string::npos; start = bar + 1)
      cells.push_back(trimmed(line.substr(start, bar - start)));
    ASSERT_EQ(cells.size(), 6u) << line;
    Diagnostics d;
    auto inv = load_model(kVlmData + "/" + cells[0], d);
    ASSERT_TRUE(inv) << cells[0] << ": " << format_diagnostics(d);
    discover_layers(*inv, DiscoveryPatterns::shipped(), d);
    auto row = multimodal_row(*inv);
    for (size_t k = 0; k < row.size(); ++k)
      EXPECT_EQ(cells[k + 1], row[k]) << cells[0] << " column " << k + 2;
    ++rows;
  }
  EXPECT_GE(rows, 5u);
}

}  // namespace
}  // namespace layerfreeze
