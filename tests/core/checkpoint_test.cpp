// Checkpoints as a whole: config.json beside the index, model families, ties, non-parameters.
// Real published checkpoints' indexes and configs (tests/data/real-checkpoints) and published
// configs (tests/data/configs, rules/models) with their published parameter counts.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/embedded_rules.hpp"
#include "core/layer_discovery.hpp"
#include "layerfreeze/model_source.hpp"
#include "print/inventory_printer.hpp"
#include "sources/family.hpp"
#include "sources/json_file.hpp"
#include "sources/model_config.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

const std::string kData = LAYERFREEZE_TEST_DATA;

// A fresh folder of this process's own (ctest runs test cases as parallel processes).
std::filesystem::path fresh_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

Inventory load_ok(const std::string& spec, Diagnostics& d) {
  auto inv = load_model(spec, d);
  EXPECT_TRUE(inv) << format_diagnostics(d);
  if (!inv) return {};
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  return std::move(*inv);
}

struct CheckpointCase {
  std::string folder, architecture;
  std::vector<std::pair<std::string, int>> stacks;  // container, layers
  std::string tie_alias, tie_canonical;             // "" when untied
  size_t non_params;
  std::string non_param_kind;
  int64_t numel;         // 0: shapes unknown (no family for the model type, or a partial config)
  int64_t stored_twice;  // parameters the index's total_size counts twice (a tied head stored too)
  int buffer_bytes;      // bytes of buffers the index's total_size includes
};

void PrintTo(const CheckpointCase& c, std::ostream* o) { *o << c.folder; }

class RealCheckpoint : public ::testing::TestWithParam<CheckpointCase> {};

TEST_P(RealCheckpoint, ArchitectureStacksTiesNonParametersAndCount) {
  const auto& c = GetParam();
  Diagnostics d;
  Inventory inv = load_ok(kData + "/real-checkpoints/" + c.folder, d);
  EXPECT_EQ(inv.facts().model_type, c.architecture);
  ASSERT_EQ(inv.stacks.size(), c.stacks.size());
  for (const auto& [container, layers] : c.stacks) {
    bool found = false;
    for (const auto& st : inv.stacks)
      if (st.container == container) {
        found = true;
        EXPECT_EQ(st.num_layers, layers) << container;
      }
    EXPECT_TRUE(found) << container;
  }
  if (c.tie_alias.empty()) {
    for (const auto& p : inv.params())
      if (p.role == Role::kEmbeddings || p.role == Role::kHead) {
        EXPECT_TRUE(p.aliases.empty()) << p.name;
      }
  } else {
    ASSERT_TRUE(inv.contains(c.tie_alias));
    EXPECT_EQ(inv.params()[*inv.find(c.tie_alias)].name, c.tie_canonical);
  }
  EXPECT_EQ(inv.facts().non_params.size(), c.non_params);
  for (const auto& np : inv.facts().non_params) {
    EXPECT_EQ(np.kind, c.non_param_kind);
    EXPECT_FALSE(inv.contains(np.name)) << np.name << " must not be selectable";
  }
  // No stated layer count disagrees with discovery.
  for (const auto& w : d.items()) EXPECT_NE(w.code, "config-layers-mismatch") << w.message;
  if (c.numel == 0) {
    EXPECT_FALSE(inv.shapes_known());
    return;
  }
  ASSERT_TRUE(inv.shapes_known());
  EXPECT_EQ(inv.total_numel(), c.numel);
  // The index is a second witness: its total_size over the dtype's bytes, less what it stores
  // twice.
  std::ifstream in(kData + "/real-checkpoints/" + c.folder + "/model.safetensors.index.json");
  auto j = nlohmann::json::parse(in);
  const int64_t total_size = j["metadata"]["total_size"].get<int64_t>();
  const int bytes = dtype_bytes(inv.params()[0].dtype);
  EXPECT_EQ((total_size - c.buffer_bytes) / bytes - c.stored_twice, c.numel);
  if (j["metadata"].contains("total_parameters")) {
    EXPECT_EQ(j["metadata"]["total_parameters"].get<int64_t>(), c.numel);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Published, RealCheckpoint,
    ::testing::Values(CheckpointCase{"mixtral-8x22b",
                                     "MixtralForCausalLM",
                                     {{"model.layers", 56}},
                                     "",
                                     "",
                                     0,
                                     "",
                                     140620634112,
                                     0,
                                     0},
                      CheckpointCase{"bloom-176b",
                                     "BloomForCausalLM",
                                     {{"h", 70}},
                                     "lm_head.weight",
                                     "word_embeddings.weight",
                                     0,
                                     "",
                                     176247271424,
                                     0,
                                     0},
                      CheckpointCase{"falcon-180b",
                                     "FalconForCausalLM",
                                     {{"transformer.h", 80}},
                                     "lm_head.weight",
                                     "transformer.word_embeddings.weight",
                                     0,
                                     "",
                                     178557088768,
                                     65024LL * 14848,
                                     0},
                      CheckpointCase{"granite-3.1-1b-a400m",
                                     "GraniteMoeForCausalLM",
                                     {{"model.layers", 24}},
                                     "lm_head.weight",
                                     "model.embed_tokens.weight",
                                     0,
                                     "",
                                     1334628352,
                                     0,
                                     0},
                      CheckpointCase{"llama-65b",
                                     "LLaMAForCausalLM",
                                     {{"model.layers", 80}},
                                     "",
                                     "",
                                     80,
                                     "buffer (rotary frequencies)",
                                     65285660672,
                                     0,
                                     80 * 64 * 2},
                      CheckpointCase{"olmocr-qwen2-vl-7b",
                                     "Qwen2VLForConditionalGeneration",
                                     {{"model.layers", 28}, {"visual.blocks", 32}},
                                     "",
                                     "",
                                     0,
                                     "",
                                     8291375616,
                                     0,
                                     0},
                      CheckpointCase{
                          "molmo-7b-d-nf4",
                          "MolmoForCausalLM",
                          {{"model.transformer.blocks", 28},
                           {"model.vision_backbone.image_vit.transformer.resblocks", 23}},
                          "",
                          "",
                          336,
                          "quantization metadata (bitsandbytes)",
                          0,
                          0,
                          0},
                      CheckpointCase{"minicpm-v-2_6",
                                     "Qwen2ForCausalLM",
                                     {{"model.layers", 28}, {"vpm.encoder.layers", 27}},
                                     "",
                                     "",
                                     0,
                                     "",
                                     0,
                                     0,
                                     0},
                      CheckpointCase{"deepseek-ocr2",
                                     "DeepseekOCR2ForCausalLM",
                                     {{"model.layers", 12},
                                      {"model.qwen2_model.model.model.layers", 24},
                                      {"model.sam_model.blocks", 12}},
                                     "",
                                     "",
                                     0,
                                     "",
                                     0,
                                     0,
                                     0},
                      CheckpointCase{"qwen3.5-moe-25b-a3b-reap",
                                     "Qwen3_5MoeForConditionalGeneration",
                                     {{"model.language_model.layers", 40}},
                                     "",
                                     "",
                                     0,
                                     "",
                                     25091371648,
                                     0,
                                     0}));

TEST(RealCheckpoint, MolmoIsQuantizedAndItsMetadataIsApart) {
  Diagnostics d;
  Inventory inv = load_ok(kData + "/real-checkpoints/molmo-7b-d-nf4", d);
  EXPECT_EQ(inv.facts().quantization, "bitsandbytes nf4");
  EXPECT_EQ(inv.params().size(), 921u - 336u);
  EXPECT_TRUE(inv.contains("model.transformer.blocks.0.att_proj.weight"));
  EXPECT_FALSE(inv.contains("model.transformer.blocks.0.att_proj.weight.absmax"));
}

TEST(RealCheckpoint, ManifestKeepsNonParametersAndQuantization) {
  Diagnostics d;
  Inventory inv = load_ok(kData + "/real-checkpoints/molmo-7b-d-nf4", d);
  auto back = parse_manifest(inventory_json(inv), "molmo.json", d);
  ASSERT_TRUE(back) << format_diagnostics(d);
  EXPECT_EQ(back->facts().non_params.size(), 336u);
  EXPECT_EQ(back->facts().non_params[0].kind, "quantization metadata (bitsandbytes)");
  EXPECT_EQ(back->facts().quantization, "bitsandbytes nf4");
  // Read back, it is the same model once discovery has put it in data-flow order again.
  discover_layers(*back, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(back->fingerprint(), inv.fingerprint());
}

TEST(RealCheckpoint, ALayerCountTheConfigStatesAndDiscoveryDoesNotFindIsWarned) {
  const auto dir = fresh_dir("lfz-layers");
  std::filesystem::copy_file(
      kData + "/real-checkpoints/molmo-7b-d-nf4/model.safetensors.index.json",
      dir / "model.safetensors.index.json");
  std::ifstream in(kData + "/real-checkpoints/molmo-7b-d-nf4/config.json");
  auto cfg = nlohmann::json::parse(in);
  cfg["num_hidden_layers"] = 30;
  std::ofstream(dir / "config.json") << cfg.dump();
  Diagnostics d;
  Inventory inv = load_ok(dir.string(), d);
  const Diagnostic* w = nullptr;
  for (const auto& x : d.items())
    if (x.code == "config-layers-mismatch") w = &x;
  ASSERT_TRUE(w) << format_diagnostics(d);
  EXPECT_NE(w->message.find("says num_hidden_layers = 30, but the trunk has 28 layers and no "
                            "split of the stacks agrees (stacks found: "
                            "model.vision_backbone.image_vit.transformer.resblocks (23, vision "
                            "tower), model.transformer.blocks (28))"),
            std::string::npos)
      << w->message;
  std::filesystem::remove_all(dir);
}

TEST(RealCheckpoint, MiniCpmConfigCoversOnlyTheLanguageModel) {
  Diagnostics d;
  Inventory inv = load_ok(kData + "/real-checkpoints/minicpm-v-2_6", d);
  const Diagnostic* w = nullptr;
  for (const auto& x : d.items())
    if (x.code == "config-names-differ") w = &x;
  ASSERT_TRUE(w);
  EXPECT_NE(w->message.find("implies 339 tensors; the checkpoint has 789 parameters: 450 only in "
                            "the checkpoint, 0 only in the config"),
            std::string::npos)
      << w->message;
  // The language model's shapes are filled in; the vision tower's stay unknown.
  EXPECT_TRUE(inv.params()[*inv.find("model.layers.0.self_attn.q_proj.weight")].shape_known);
  EXPECT_FALSE(inv.params()[*inv.find("vpm.encoder.layers.0.mlp.fc1.weight")].shape_known);
}

TEST(RealCheckpoint, MergeConflictIndexNamesTrailingTextAndPosition) {
  Diagnostics d;
  EXPECT_FALSE(load_model(kData + "/bad-inputs/bloom-index-with-merge-conflict.json", d));
  ASSERT_FALSE(d.items().empty());
  EXPECT_EQ(d.items()[0].code, "json-trailing-text");
  EXPECT_EQ(d.items()[0].loc.line, 2);
  EXPECT_EQ(d.items()[0].loc.column, 1);
  EXPECT_NE(d.items()[0].message.find("(character 60304): '======='"), std::string::npos)
      << d.items()[0].message;
  // The same text named as an index reports the same cause.
  const auto dir = fresh_dir("lfz-merge-conflict");
  std::filesystem::copy_file(kData + "/bad-inputs/bloom-index-with-merge-conflict.json",
                             dir / "model.safetensors.index.json",
                             std::filesystem::copy_options::overwrite_existing);
  Diagnostics d2;
  EXPECT_FALSE(load_model((dir / "model.safetensors.index.json").string(), d2));
  EXPECT_EQ(d2.items()[0].code, "json-trailing-text");
  std::filesystem::remove_all(dir);
}

// Published parameter counts, from configs alone (one family each at least).
struct CountCase {
  std::string model;  // builtin:NAME or a tests/data/configs file
  int64_t numel;
  std::string family;
};
void PrintTo(const CountCase& c, std::ostream* o) { *o << c.model; }

class PublishedCount : public ::testing::TestWithParam<CountCase> {};

TEST_P(PublishedCount, ConfigAloneGivesThePublishedCount) {
  const auto& c = GetParam();
  Diagnostics d;
  const std::string spec =
      c.model.rfind("builtin:", 0) == 0 ? c.model : kData + "/configs/" + c.model + ".json";
  auto inv = load_model(spec, d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_TRUE(inv->facts().registration_order);
  EXPECT_EQ(inv->total_numel(), c.numel);
  if (c.model.rfind("builtin:", 0) != 0) {
    EXPECT_EQ(inv->facts().family, c.family);
  }
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_GT(inv->num_layers(), 0);
  for (const auto& w : d.items()) EXPECT_NE(w.code, "config-layers-mismatch") << w.message;
}

INSTANTIATE_TEST_SUITE_P(
    Families, PublishedCount,
    ::testing::Values(
        CountCase{"builtin:gpt2", 124439808, "gpt2"},
        CountCase{"builtin:llama2-7b", 6738415616, "llama"},
        CountCase{"builtin:llama2-70b", 68976648192, "llama"},
        CountCase{"builtin:mixtral-8x7b", 46702792704, "mixtral"},
        CountCase{"builtin:bert-base", 109482240, "bert"},
        CountCase{"builtin:t5-small", 60506624, "t5"},
        CountCase{"builtin:mistral-7b", 7241732096, "llama"},
        CountCase{"builtin:llama3-8b", 8030261248, "llama"},
        CountCase{"builtin:gemma-7b", 8537680896, "gemma"},
        CountCase{"builtin:phi-2", 2779683840, "phi"},
        CountCase{"builtin:falcon-7b", 6921720704, "falcon"},
        CountCase{"builtin:bloom-560m", 559214592, "bloom"},
        // transformers' count: the routers' e_score_correction_bias are buffers
        CountCase{"builtin:deepseek-v3", 671026404352, "deepseek"},
        CountCase{"pythia-160m", 162322944, "gpt_neox"}, CountCase{"opt-125m", 125239296, "opt"},
        CountCase{"phi-3-mini-4k", 3821079552, "phi3"},
        CountCase{"gemma-2-2b", 2614341888, "gemma"}, CountCase{"qwen3-0.6b", 596049920, "llama"},
        CountCase{"qwen3-30b-a3b", 30532122624, "qwen_moe"},
        CountCase{"qwen1.5-moe-a2.7b", 14315784192, "qwen_moe"},
        CountCase{"deepseek-v2-lite", 15706484224, "deepseek"},
        CountCase{"gemma-3-1b", 999885952, "gemma"},
        CountCase{"gpt-oss-20b", 20914757184, "gpt_oss"},
        CountCase{"qwen2.5-vl-7b", 8292166656, "qwen2_5_vl"},
        CountCase{"gemma-3-4b-it", 4300079472, "gemma3"},
        // the task model bert-base-uncased's hub config names (transformers' count)
        CountCase{"bert-base-uncased-mlm", 109514298, "bert"},
        CountCase{"bart-large", 406291456, "bart"}, CountCase{"mbart-large", 610851840, "bart"},
        CountCase{"whisper-small", 241734912, "whisper"},
        CountCase{"olmoe-1b-7b", 6919161856, "olmoe"},
        CountCase{"phi-3.5-moe", 41873153344, "mixtral"},
        CountCase{"glm-4.5-air", 106852245504, "glm4_moe"},
        // composites of families (a vision encoder, a projector, a language model): transformers'
        // default configs; LLaVA-1.5-7B's published count
        CountCase{"llava-1.5-7b", 7062902784, "llava"},
        CountCase{"llava-onevision-qwen2-7b", 12469102112, "llava"},
        CountCase{"paligemma-3b", 2910390528, "paligemma"},
        CountCase{"qwen2-audio-7b", 12692062208, "qwen2_audio"},
        CountCase{"voxtral-mini-3b", 4676271104, "voxtral"},
        CountCase{"idefics3-8b", 6909685760, "idefics3"},
        CountCase{"internvl3-8b", 11765025792, "internvl"},
        CountCase{"llama4-scout", 108225039360, "llama4"}, CountCase{"marian", 414307328, "bart"},
        CountCase{"pegasus", 406287360, "bart"},
        // a hybrid trunk: Mamba and attention layers in one stack (the published count)
        CountCase{"jamba-v0.1", 51570323328, "jamba"}));

// A family made of parts: each part is another family's tensors for one config section, under a
// prefix, with its ties; a part naming no shipped family is an error at its line.
TEST(FamilyFile, PartsAreOtherFamiliesOnASectionOfTheConfig) {
  Diagnostics d;
  auto inv = load_model(kData + "/configs/paligemma-3b.json", d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_TRUE(inv->contains("vision_tower.vision_model.encoder.layers.26.mlp.fc2.weight"));
  EXPECT_FALSE(inv->contains("vision_tower.vision_model.head.probe"));  // vision_use_head false
  const Param& emb = inv->params()[*inv->find("language_model.model.embed_tokens.weight")];
  EXPECT_EQ(emb.aliases, (std::vector<std::string>{"language_model.lm_head.weight"}));
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv->num_layers(), 18);
  ASSERT_EQ(inv->towers.size(), 1u);
  EXPECT_EQ(inv->towers[0].root, "vision_tower");
  EXPECT_EQ(inv->towers[0].num_layers, 27);
  Diagnostics bad;
  auto f = Family::parse(
      "family: x\nmodel_types: {x: {}}\ntensors:\n  - {family: clip_visoin, config: v}\n", "f.yaml",
      bad);
  ASSERT_TRUE(f) << format_diagnostics(bad);
  ModelConfig cfg;
  cfg.path = "c.json";
  cfg.model_type = "x";
  EXPECT_FALSE(f->expand(cfg, bad));
  EXPECT_NE(format_diagnostics(bad).find("includes family 'clip_visoin', which is not a shipped"),
            std::string::npos)
      << format_diagnostics(bad);
  EXPECT_EQ(bad.items().back().loc.line, 4);
}

// BertForMaskedLM is not BertModel: the base model under `bert.`, no pooler, and the prediction
// head whose decoder is the word embeddings (and its bias the head's bias), as transformers ties.
TEST(Family, ATaskArchitectureGetsItsOwnPrefixHeadAndTies) {
  Diagnostics d;
  auto inv = load_model(kData + "/configs/bert-base-uncased-mlm.json", d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_TRUE(inv->contains("bert.embeddings.word_embeddings.weight"));
  EXPECT_FALSE(inv->contains("embeddings.word_embeddings.weight"));
  EXPECT_FALSE(inv->contains("bert.pooler.dense.weight"));
  const Param& emb = inv->params()[*inv->find("bert.embeddings.word_embeddings.weight")];
  EXPECT_EQ(emb.aliases, (std::vector<std::string>{"cls.predictions.decoder.weight"}));
  const Param& bias = inv->params()[*inv->find("cls.predictions.bias")];
  EXPECT_EQ(bias.aliases, (std::vector<std::string>{"cls.predictions.decoder.bias"}));
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv->params()[*inv->find("cls.predictions.transform.dense.weight")].role, Role::kHead);
  auto pre = load_model(kData + "/configs/bert-pretraining-2l.json", d);
  ASSERT_TRUE(pre) << format_diagnostics(d);
  EXPECT_TRUE(pre->contains("bert.pooler.dense.weight"));
  EXPECT_TRUE(pre->contains("cls.seq_relationship.weight"));
  EXPECT_EQ(pre->params().size(), 46u);  // transformers builds 46 for 2 layers
}

// The real checkpoints' configs alone give the count their index gives (with the config beside
// it), for every checkpoint whose model type a family covers.
TEST(RealCheckpoint, ConfigAloneEqualsConfigWithIndex) {
  for (const char* folder : {"mixtral-8x22b", "bloom-176b", "falcon-180b", "granite-3.1-1b-a400m",
                             "llama-65b", "olmocr-qwen2-vl-7b"}) {
    Diagnostics d;
    const std::string dir = kData + "/real-checkpoints/" + folder;
    auto alone = load_model(dir + "/config.json", d);
    auto both = load_model(dir, d);
    ASSERT_TRUE(alone && both) << folder << format_diagnostics(d);
    EXPECT_EQ(alone->total_numel(), both->total_numel()) << folder;
    EXPECT_EQ(alone->facts().model_type, both->facts().model_type) << folder;
  }
  // MiniCPM-V's config is its language model's: Qwen2-7B (7,615,616,512 parameters published)
  // with a vocabulary of 151,666 tokens instead of 152,064 (input and output embeddings of 3,584).
  Diagnostics d;
  auto llm = load_model(kData + "/real-checkpoints/minicpm-v-2_6/config.json", d);
  ASSERT_TRUE(llm) << format_diagnostics(d);
  EXPECT_EQ(llm->total_numel(), 7615616512 - 2 * (152064 - 151666) * 3584);
}

TEST(Family, DeepSeekDenseFirstLayersSharedExpertsAndMla) {
  Diagnostics d;
  auto inv = load_model("builtin:deepseek-v3", d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_TRUE(inv->contains("model.layers.2.mlp.gate_proj.weight"));
  EXPECT_FALSE(inv->contains("model.layers.2.mlp.experts.0.gate_proj.weight"));
  EXPECT_TRUE(inv->contains("model.layers.3.mlp.experts.255.down_proj.weight"));
  EXPECT_TRUE(inv->contains("model.layers.60.mlp.shared_experts.up_proj.weight"));
  EXPECT_TRUE(inv->contains("model.layers.3.mlp.gate.weight"));
  // A buffer, not a parameter (see NonParameters.DeepSeekV3ScalesAndTheMtpLayerAreNotParameters).
  EXPECT_FALSE(inv->contains("model.layers.3.mlp.gate.e_score_correction_bias"));
  EXPECT_EQ(inv->params()[*inv->find("model.layers.0.self_attn.q_b_proj.weight")].shape,
            (std::vector<int64_t>{128 * 192, 1536}));
  EXPECT_EQ(inv->facts().quantization, "fp8");
  auto lite = load_model(kData + "/configs/deepseek-v2-lite.json", d);
  ASSERT_TRUE(lite);
  EXPECT_TRUE(lite->contains("model.layers.0.self_attn.q_proj.weight"));  // q_lora_rank: null
  EXPECT_FALSE(lite->contains("model.layers.0.self_attn.q_a_proj.weight"));
}

TEST(Family, AnArchitectureTheFamilyDoesNotDescribeIsWarned) {
  const auto dir = fresh_dir("lfz-arch");
  std::ofstream(dir / "config.json")
      << R"({"model_type": "llama", "architectures": ["LlamaForSequenceClassification"],
      "vocab_size": 100, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2})";
  Diagnostics d;
  auto inv = load_model((dir / "config.json").string(), d);
  ASSERT_TRUE(inv);
  ASSERT_EQ(d.items().size(), 1u) << format_diagnostics(d);
  EXPECT_EQ(d.items()[0].code, "config-architecture-unlisted");
  EXPECT_NE(d.items()[0].message.find("LlamaForSequenceClassification is not among them"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Family, TiesFollowTheConfigOrTheClassDefault) {
  Diagnostics d;
  auto qwen = load_model(kData + "/configs/qwen3-0.6b.json", d);  // tie_word_embeddings: true
  ASSERT_TRUE(qwen);
  EXPECT_EQ(qwen->params()[*qwen->find("lm_head.weight")].name, "model.embed_tokens.weight");
  auto gemma = load_model(kData + "/configs/gemma-2-2b.json", d);  // no key: Gemma2Config ties
  ASSERT_TRUE(gemma);
  EXPECT_EQ(gemma->params()[*gemma->find("lm_head.weight")].name, "model.embed_tokens.weight");
  auto pythia = load_model(kData + "/configs/pythia-160m.json", d);
  ASSERT_TRUE(pythia);
  EXPECT_EQ(pythia->params()[*pythia->find("embed_out.weight")].name, "embed_out.weight");
}

// Bad configs: each a clear error naming the key or the cause.
struct BadConfig {
  std::string text, code, message_part;
};
void PrintTo(const BadConfig& c, std::ostream* o) { *o << c.code << ": " << c.message_part; }

class BadConfigs : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigs, AreErrorsThatNameTheCause) {
  const auto& c = GetParam();
  const auto path = fresh_dir("lfz-bad-config") / "config.json";
  std::ofstream(path) << c.text;
  Diagnostics d;
  EXPECT_FALSE(load_model(path.string(), d));
  ASSERT_TRUE(d.has_errors());
  std::string all;
  for (const auto& x : d.items()) all += x.code + ": " + x.message + "\n";
  EXPECT_NE(all.find(c.code + ": "), std::string::npos) << all;
  EXPECT_NE(all.find(c.message_part), std::string::npos) << all;
  std::filesystem::remove_all(path.parent_path());
}

const char* kLlama =
    R"("model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32)";

INSTANTIATE_TEST_SUITE_P(
    Table, BadConfigs,
    ::testing::Values(
        BadConfig{"[1, 2]", "config-format", "is not a JSON object (it is array)"},
        BadConfig{std::string("{") + kLlama + R"(, "num_hidden_layers": 32} trailing)",
                  "json-trailing-text", "has text after its JSON value, at 1:"},
        BadConfig{"{\"model_type\": \"llama\",", "json-syntax", "is not valid JSON at 1:"},
        BadConfig{std::string("{") + kLlama + "}", "config-missing",
                  "has no 'num_hidden_layers', which family llama needs"},
        BadConfig{std::string("{") + kLlama + R"(, "num_hidden_layers": 0})", "config-value",
                  "repeat count 'num_hidden_layers' is 0; it must be between 1 and 100000"},
        BadConfig{
            std::string("{") + kLlama + R"(, "num_hidden_layers": 2, "num_key_value_heads": -8})",
            "config-value",
            "size of 'model.layers.0.self_attn.k_proj.weight' 'num_key_value_heads * head_dim' is "
            "-1024; it must be between 1 and"},
        BadConfig{std::string("{") + kLlama +
                      R"(, "num_hidden_layers": 2, "hidden_size": 4611686018427387904})",
                  "config-value",
                  "size of 'model.embed_tokens.weight' 'hidden_size' is 4611686018427387904"},
        BadConfig{
            std::string("{") + kLlama + R"(, "num_hidden_layers": 2, "hidden_size": 549755813888})",
            "config-value",
            "tensor 'model.embed_tokens.weight' would have more than 2^52 elements"},
        BadConfig{std::string("{") + kLlama + R"(, "num_hidden_layers": "32"})", "config-value",
                  "is '32', not a whole number"},
        BadConfig{R"({"model_type": "mamba", "architectures": ["MambaForCausalLM"]})",
                  "unknown-family", "no model family for model_type 'mamba' (MambaForCausalLM)"},
        BadConfig{R"({"model_type": 7})", "config-value", "'model_type' must be a string"},
        BadConfig{
            std::string("{") + R"("model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
                     "intermediate_size": 11008, "num_attention_heads": 0, "num_hidden_layers": 2})",
            "config-value",
            "the default of 'head_dim': in '${hidden_size // num_attention_heads}': division by "
            "zero"},
        // Counted before a single name is built: rejected in milliseconds.
        BadConfig{
            R"({"model_type": "mixtral", "vocab_size": 32000, "hidden_size": 64, "intermediate_size": 64,
                     "num_attention_heads": 4, "num_hidden_layers": 100000, "num_local_experts": 100000})",
            "config-value", "config implies more than 1000000 tensors"}));

TEST(FamilyFile, UnknownNamesAndKeysAreErrorsWithLocations) {
  Diagnostics d;
  EXPECT_FALSE(
      Family::parse("family: x\nmodel_types: {x: {}}\nconfig: {hidden_size: ~}\n"
                    "tensors:\n  - [a.weight, [hiden_size], Linear]\n",
                    "f.yaml", d));
  ASSERT_TRUE(d.has_errors());
  EXPECT_EQ(d.items()[0].loc.line, 5);
  EXPECT_NE(
      d.items()[0].message.find("unknown parameter 'hiden_size' — did you mean 'hidden_size'?"),
      std::string::npos)
      << d.items()[0].message;
  Diagnostics d2;
  EXPECT_FALSE(Family::parse("family: x\nmodel_types: {x: {}}\ntensor: []\n", "f.yaml", d2));
  EXPECT_NE(format_diagnostics(d2).find(
                "unknown key 'tensor' in a family file — did you mean 'tensors'?"),
            std::string::npos);
  Diagnostics d3;
  EXPECT_FALSE(Family::parse(
      "family: x\nmodel_types: {x: {}}\ntensors:\n  - repeat: 3\n    tensors: []\n", "f.yaml", d3));
  EXPECT_NE(format_diagnostics(d3).find("a repeat needs `as: NAME`"), std::string::npos);
  Diagnostics d4;
  EXPECT_FALSE(Family::parse(
      "family: x\nmodel_types: {x: {qk_nrom: true}}\nconfig: {qk_norm: false}\ntensors: []\n",
      "f.yaml", d4));
  EXPECT_NE(format_diagnostics(d4).find(
                "model type 'x' sets 'qk_nrom', which `config` does not declare — did you mean "
                "'qk_norm'?"),
            std::string::npos)
      << format_diagnostics(d4);
}

TEST(FamilyFile, ARepeatedNameIsAnError) {
  Diagnostics d;
  auto f = Family::parse(
      "family: x\nmodel_types: {x: {}}\nconfig: {hidden_size: ~}\ntensors:\n"
      "  - [a.weight, [hidden_size], Linear]\n  - [a.weight, [hidden_size], Linear]\n",
      "f.yaml", d);
  ASSERT_TRUE(f) << format_diagnostics(d);
  auto cfg = model_config_from_json(
      nlohmann::json::parse(R"({"model_type": "x", "hidden_size": 4})"), "config.json", d);
  ASSERT_TRUE(cfg);
  EXPECT_FALSE(f->expand(*cfg, d));
  EXPECT_NE(format_diagnostics(d).find("family x names 'a.weight' twice"), std::string::npos)
      << format_diagnostics(d);
}

// A GPTQ checkpoint: `qweight` is the weight, `qzeros`/`scales`/`g_idx` are its metadata; with
// the config the weight gets its logical shape and dtype.
TEST(NonParameters, GptqWeightsCountAsTheirLogicalParameters) {
  const auto dir = fresh_dir("lfz-gptq");
  std::vector<TensorSpec> t = {{"model.embed_tokens.weight", "F16", {100, 64}},
                               {"model.norm.weight", "F16", {64}},
                               {"lm_head.weight", "F16", {100, 64}}};
  for (int i = 0; i < 2; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    for (const char* m :
         {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}) {
      t.push_back({l + m + ".qweight", "I32", {8, 64}});
      t.push_back({l + m + ".qzeros", "I32", {1, 8}});
      t.push_back({l + m + ".scales", "F16", {1, 64}});
      t.push_back({l + m + ".g_idx", "I32", {64}});
    }
    for (const char* m : {"mlp.gate_proj", "mlp.up_proj"})
      t.push_back({l + m + ".weight", "F16", {128, 64}});
    t.push_back({l + "mlp.down_proj.weight", "F16", {64, 128}});
    t.push_back({l + "input_layernorm.weight", "F16", {64}});
    t.push_back({l + "post_attention_layernorm.weight", "F16", {64}});
  }
  std::string err;
  ASSERT_TRUE(write_safetensors((dir / "model.safetensors").string(), t, &err)) << err;
  std::ofstream(dir / "config.json")
      << R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "torch_dtype": "float16",
            "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 64}})";
  Diagnostics d;
  Inventory inv = load_ok(dir.string(), d);
  EXPECT_EQ(inv.facts().quantization, "gptq 4-bit");
  EXPECT_EQ(inv.facts().non_params.size(), 2u * 4 * 3);
  ASSERT_TRUE(inv.contains("model.layers.1.self_attn.o_proj.weight"));
  EXPECT_FALSE(inv.contains("model.layers.1.self_attn.o_proj.qweight"));
  const Param& o = inv.params()[*inv.find("model.layers.1.self_attn.o_proj.weight")];
  EXPECT_EQ(o.shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(o.dtype, "float16");
  EXPECT_TRUE(inv.shapes_known());
  // Exactly the parameters of the unquantized model: no warning about names.
  for (const auto& w : d.items()) EXPECT_NE(w.code, "config-names-differ") << w.message;
  Diagnostics d2;
  auto plain = load_model((dir / "config.json").string(), d2);
  ASSERT_TRUE(plain);
  EXPECT_EQ(inv.total_numel(), plain->total_numel());
  std::filesystem::remove_all(dir);
}

// A safetensors file whose shapes disagree with its config: warned, the file's shapes kept.
TEST(Family, ShapesThatDisagreeWithTheConfigAreWarnedAbout) {
  const auto dir = fresh_dir("lfz-shapes");
  std::string err;
  ASSERT_TRUE(write_safetensors((dir / "model.safetensors").string(),
                                {{"model.embed_tokens.weight", "F32", {10, 8}},
                                 {"model.layers.0.self_attn.q_proj.weight", "F32", {4, 8}},
                                 {"model.layers.0.self_attn.k_proj.weight", "F32", {8, 8}},
                                 {"model.layers.0.self_attn.v_proj.weight", "F32", {8, 8}},
                                 {"model.layers.0.self_attn.o_proj.weight", "F32", {8, 8}},
                                 {"model.layers.0.mlp.gate_proj.weight", "F32", {16, 8}},
                                 {"model.layers.0.mlp.up_proj.weight", "F32", {16, 8}},
                                 {"model.layers.0.mlp.down_proj.weight", "F32", {8, 16}},
                                 {"model.layers.0.input_layernorm.weight", "F32", {8}},
                                 {"model.layers.0.post_attention_layernorm.weight", "F32", {8}},
                                 {"model.norm.weight", "F32", {8}},
                                 {"lm_head.weight", "F32", {10, 8}}},
                                &err))
      << err;
  std::ofstream(dir / "config.json")
      << R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
      "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2})";
  Diagnostics d;
  Inventory inv = load_ok(dir.string(), d);
  ASSERT_EQ(d.items().size(), 1u) << format_diagnostics(d);
  EXPECT_EQ(d.items()[0].code, "config-shapes-differ");
  EXPECT_EQ(d.items()[0].notes[0], "first: model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(inv.params()[*inv.find("model.layers.0.self_attn.q_proj.weight")].shape,
            (std::vector<int64_t>{4, 8}));
  std::filesystem::remove_all(dir);
}

TEST(FamilyFile, AUsersOwnFamilyPlansTheirModel) {
  Diagnostics d;
  auto inv = load_model(kData + "/families/tiny_mlp_config.json", d, "",
                        kData + "/families/tiny_mlp.yaml");
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_EQ(inv->facts().model_type, "TinyMlp");
  EXPECT_EQ(inv->facts().family, "tiny_mlp");
  EXPECT_EQ(inv->total_numel(), 100 * 16 * 2 + 3 * (16 * 16 + 16 + 16));
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv->num_layers(), 3);
  // Without it the model type is unknown.
  Diagnostics d2;
  EXPECT_FALSE(load_model(kData + "/families/tiny_mlp_config.json", d2));
  EXPECT_EQ(d2.items()[0].code, "unknown-family");
}

TEST(FamilyFile, HostileFilesAreBounded) {
  Diagnostics d;
  EXPECT_FALSE(Family::parse(
      "family: x\nmodel_types: {x: {}}\ntensors: " + std::string(100, '[') + "\n", "f.yaml", d));
  EXPECT_EQ(d.items()[0].code, "too-deep");
  // A billion laughs: eight levels of aliases doubling a list of groups.
  std::string bomb =
      "family: x\nmodel_types: {x: {}}\nconfig: {n: 1}\nl0: &l0 [{tensors: [[a.w, [n], L]]}]\n";
  for (int i = 1; i <= 20; ++i)
    bomb += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [{tensors: *l" +
            std::to_string(i - 1) + "}, {tensors: *l" + std::to_string(i - 1) + "}]\n";
  bomb += "tensors: *l20\n";
  Diagnostics d2;
  EXPECT_FALSE(Family::parse(bomb, "f.yaml", d2));
  // Refused as it is read, before the family counts what it declares (docs/SECURITY.md).
  EXPECT_EQ(d2.items()[0].code, "yaml-too-large") << format_diagnostics(d2);
}

// gpt-oss as published: MXFP4 experts stored as `_blocks` (the weights) and `_scales` (metadata).
// An index without shards, with its config, plans with the logical parameters' exact count.
TEST(NonParameters, Mxfp4BlocksAreTheWeightsAndScalesAreMetadata) {
  const auto dir = fresh_dir("lfz-mxfp4");
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(kData + "/configs/gpt-oss-20b.json"));
  cfg["num_hidden_layers"] = 2;
  std::ofstream(dir / "config.json") << cfg.dump();
  nlohmann::json wm = nlohmann::json::object();
  for (const char* n : {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"})
    wm[n] = "a.safetensors";
  for (int i = 0; i < 2; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    for (const char* n :
         {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
          "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
          "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
          "self_attn.o_proj.bias", "self_attn.sinks", "mlp.router.weight", "mlp.router.bias",
          "mlp.experts.gate_up_proj_blocks", "mlp.experts.gate_up_proj_scales",
          "mlp.experts.gate_up_proj_bias", "mlp.experts.down_proj_blocks",
          "mlp.experts.down_proj_scales", "mlp.experts.down_proj_bias"})
      wm[l + n] = "a.safetensors";
  }
  std::ofstream(dir / "model.safetensors.index.json") << nlohmann::json{{"weight_map", wm}}.dump();
  Diagnostics d;
  Inventory inv = load_ok(dir.string(), d);
  for (const auto& w : d.items()) EXPECT_NE(w.code, "config-names-differ") << w.message;
  EXPECT_EQ(inv.facts().quantization, "mxfp4");
  EXPECT_EQ(inv.facts().non_params.size(), 4u);
  EXPECT_EQ(inv.facts().non_params[0].kind, "quantization metadata (MXFP4)");
  ASSERT_TRUE(inv.contains("model.layers.1.mlp.experts.gate_up_proj"));
  EXPECT_EQ(inv.params()[*inv.find("model.layers.1.mlp.experts.gate_up_proj")].shape,
            (std::vector<int64_t>{32, 2880, 2 * 2880}));
  Diagnostics d2;
  auto alone = load_model((dir / "config.json").string(), d2);
  ASSERT_TRUE(alone && inv.shapes_known());
  EXPECT_EQ(inv.total_numel(), alone->total_numel());
  std::filesystem::remove_all(dir);
}

// DeepSeek-V3 as published: fp8 weights with `weight_scale_inv` block scales, and a
// multi-token-prediction layer (model.layers.61) that DeepseekV3ForCausalLM does not load.
TEST(NonParameters, DeepSeekV3ScalesAndTheMtpLayerAreNotParameters) {
  const auto dir = fresh_dir("lfz-dsv3");
  std::ofstream(dir / "config.json") << embedded_rule_file("models/deepseek-v3.json");
  Diagnostics d;
  auto model = load_model("builtin:deepseek-v3", d);
  ASSERT_TRUE(model);
  nlohmann::json wm = nlohmann::json::object();
  size_t scales = 0;
  for (const auto& p : model->params()) {
    wm[p.name] = "a.safetensors";
    if (p.shape.size() == 2 && p.module_type == "Linear" && p.name.rfind("model.layers.", 0) == 0) {
      wm[p.name + "_scale_inv"] = "a.safetensors";
      ++scales;
    }
    if (p.name.rfind("model.layers.60.", 0) == 0)
      wm["model.layers.61." + p.name.substr(16)] = "a.safetensors";
  }
  // Every MoE layer's router stores its score correction (the MTP layer's too).
  for (const auto& p : model->params()) {
    const std::string gate = ".mlp.gate.weight";
    if (p.name.size() > gate.size() &&
        p.name.compare(p.name.size() - gate.size(), gate.size(), gate) == 0) {
      const std::string stem = p.name.substr(0, p.name.size() - std::string("weight").size());
      wm[stem + "e_score_correction_bias"] = "a.safetensors";
      if (p.name.rfind("model.layers.60.", 0) == 0)
        wm["model.layers.61." + stem.substr(16) + "e_score_correction_bias"] = "a.safetensors";
    }
  }
  for (const char* n : {"enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight",
                        "shared_head.head.weight", "embed_tokens.weight"})
    wm[std::string("model.layers.61.") + n] = "a.safetensors";
  std::ofstream(dir / "model.safetensors.index.json") << nlohmann::json{{"weight_map", wm}}.dump();
  Diagnostics d2;
  Inventory inv = load_ok(dir.string(), d2);
  for (const auto& w : d2.items()) EXPECT_NE(w.code, "config-names-differ") << w.message;
  for (const auto& w : d2.items()) EXPECT_NE(w.code, "config-layers-mismatch") << w.message;
  EXPECT_EQ(inv.num_layers(), 61);
  EXPECT_EQ(inv.total_numel(), 671026404352);
  EXPECT_EQ(inv.facts().quantization, "fp8");
  size_t mtp = 0, fp8 = 0, router_buffers = 0;
  for (const auto& np : inv.facts().non_params) {
    if (np.kind == "multi-token prediction layer (not loaded by transformers)") ++mtp;
    if (np.kind == "quantization metadata (fp8 scales)") ++fp8;
    if (np.kind == "buffer (router score correction)") ++router_buffers;
  }
  const size_t layer60 =
      std::count_if(model->params().begin(), model->params().end(),
                    [](const Param& p) { return p.name.rfind("model.layers.60.", 0) == 0; });
  const size_t scales60 =
      std::count_if(model->params().begin(), model->params().end(), [](const Param& p) {
        return p.name.rfind("model.layers.60.", 0) == 0 && p.shape.size() == 2 &&
               p.module_type == "Linear";
      });
  EXPECT_EQ(mtp, layer60 + 6 + 1);  // the MTP layer's own tensors and its router buffer (its
                                    // scales were not written)
  EXPECT_EQ(router_buffers, 58u);   // layers 3-60
  EXPECT_EQ(fp8, scales);           // every scale of layers 0-60
  EXPECT_EQ(fp8 + mtp + router_buffers, inv.facts().non_params.size());
  EXPECT_GT(scales60, 0u);
  std::filesystem::remove_all(dir);
}

TEST(FamilyFile, ShippedFamiliesCoverTheListedModelTypes) {
  const auto types = known_model_types();
  for (const char* t :
       {"llama",       "mistral",     "qwen2",       "qwen3",      "mixtral", "qwen2_moe",
        "qwen3_moe",   "deepseek_v2", "deepseek_v3", "granitemoe", "gemma",   "gemma2",
        "gemma3_text", "phi3",        "gpt2",        "gpt_neox",   "falcon",  "bloom",
        "opt",         "bert",        "t5",          "qwen2_vl"})
    EXPECT_NE(std::find(types.begin(), types.end(), t), types.end()) << t;
}

TEST(JsonFile, SyntaxErrorsHaveLineAndColumn) {
  Diagnostics d;
  EXPECT_FALSE(parse_json_text("{\n  \"a\": [1, 2,\n}", "x.json", "x", d));
  ASSERT_EQ(d.items().size(), 1u);
  EXPECT_EQ(d.items()[0].code, "json-syntax");
  EXPECT_EQ(d.items()[0].loc.line, 3);
}

// MLX quantization (tests/data/real-checkpoints/qwen3-14b-mlx-4bit): every quantized module
// stores a packed `.weight` (uint32) with `.scales` and `.biases`. Those are metadata, and the
// logical shapes come from the config's family: Qwen3-14B has 443 parameters and
// 14,768,307,200 elements, as the config alone says.
TEST(QuantizedCheckpoint, MlxScalesAndBiasesAreMetadataAndShapesAreLogical) {
  Diagnostics d;
  Inventory inv = load_ok(kData + "/real-checkpoints/qwen3-14b-mlx-4bit", d);
  EXPECT_EQ(inv.params().size(), 443u);
  EXPECT_EQ(inv.total_numel(), 14768307200);
  EXPECT_EQ(inv.facts().non_params.size(), 564u);
  for (const auto& np : inv.facts().non_params)
    EXPECT_EQ(np.kind, "quantization metadata (MLX)") << np.name;
  for (const auto& p : inv.params()) {
    EXPECT_EQ(p.name.find(".scales"), std::string::npos) << p.name;
    EXPECT_EQ(p.name.find(".biases"), std::string::npos) << p.name;
  }
  const Param& head = inv.params()[*inv.find("lm_head.weight")];
  EXPECT_EQ(head.shape, (std::vector<int64_t>{151936, 5120}));
  EXPECT_EQ(head.role, Role::kHead);
  EXPECT_FALSE(inv.facts().quantization.empty());
  // The config and the checkpoint now agree on the names: no warning about either.
  for (const auto& w : d.items()) EXPECT_NE(w.code, "config-names-differ") << w.message;
}

// GPTQ (tests/data/real-checkpoints/qwen-7b-chat-int4-gptq): a quantized linear registers its
// bias as a buffer — on all 160 quantized linears of QWen-7B, though the unquantized model has a
// bias on `c_attn` only. None of them is a parameter, so `bitfit` trains none of them.
TEST(QuantizedCheckpoint, GptqLinearBiasesAreBuffers) {
  Diagnostics d;
  Inventory inv = load_ok(kData + "/real-checkpoints/qwen-7b-chat-int4-gptq", d);
  EXPECT_EQ(inv.params().size(), 227u);
  size_t bias_buffers = 0;
  for (const auto& np : inv.facts().non_params)
    bias_buffers += np.kind == "buffer (bias of a GPTQ/AWQ quantized linear)";
  EXPECT_EQ(bias_buffers, 160u);
  EXPECT_FALSE(inv.contains("transformer.h.0.attn.c_attn.bias"));
  for (const auto& p : inv.params()) EXPECT_NE(p.leaf(), "bias") << p.name;
  EXPECT_TRUE(inv.contains("transformer.h.0.attn.c_attn.weight"));  // the renamed qweight
}

// MiMo-7B (modeling_mimo.py): MiMoForCausalLM = a Qwen2 model, plus `model.mtp_layers` — one
// multi-token-prediction block (config num_nextn_predict_layers = 1) that its forward does not
// run. It is neither layer nor head: the head is the final norm and lm_head.
TEST(SecondSet, MimoMtpBlockIsItsOwnRoleNotTheHead) {
  Diagnostics d;
  Inventory inv = load_ok(kData + "/real-checkpoints/mimo-7b", d);
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv.num_layers(), 36);
  size_t mtp = 0;
  for (const auto& p : inv.params()) {
    const bool in_mtp = p.name.rfind("model.mtp_layers.0.", 0) == 0;
    EXPECT_EQ(p.role == Role::kMtp, in_mtp) << p.name;
    mtp += in_mtp;
  }
  EXPECT_EQ(mtp, 16u);
  std::set<std::string> head;
  for (const auto& p : inv.params())
    if (p.role == Role::kHead) head.insert(p.name);
  EXPECT_EQ(head, (std::set<std::string>{"model.norm.weight", "lm_head.weight"}));
  for (const auto& w : d.items()) EXPECT_NE(w.code, "config-layers-mismatch") << w.message;
  // gradual_unfreeze opens the head first: 2 tensors, not 18.
  auto r = test::compile_preset("gradual_unfreeze", kData + "/real-checkpoints/mimo-7b",
                                {"total_epochs=4"});
  ASSERT_TRUE(r.plan) << r.errors();
  EXPECT_EQ(r.plan->inventory->params().size() - r.plan->frozen_at({0, 0}).count(), 2u);
}

// M2M100 (modeling_m2m_100.py): encoder and decoder of 24 layers each; `model.shared` is the
// table both stacks embed with and, by M2M100Config's default (tie_word_embeddings true), the
// output layer: transformers ties encoder.embed_tokens, decoder.embed_tokens and lm_head to it.
TEST(SecondSet, M2m100TiesBothEmbeddingsAndTheHeadToShared) {
  Diagnostics d;
  Inventory inv = load_ok(kData + "/real-checkpoints/m2m100-slt", d);
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv.facts().family, "bart");
  EXPECT_EQ(inv.num_layers(), 48);
  EXPECT_EQ(inv.layers[0].name, "model.encoder.layers.0");
  EXPECT_EQ(inv.layers[24].name, "model.decoder.layers.0");
  const Param& shared = inv.params()[*inv.find("model.shared.weight")];
  EXPECT_EQ(std::set<std::string>(shared.aliases.begin(), shared.aliases.end()),
            (std::set<std::string>{"model.encoder.embed_tokens.weight",
                                   "model.decoder.embed_tokens.weight", "lm_head.weight"}));
  EXPECT_EQ(shared.role, Role::kEmbeddings);
  EXPECT_EQ(shared.shape, (std::vector<int64_t>{256206, 1024}));
  bool head_alias = false;
  for (Role r : shared.alias_roles) head_alias = head_alias || r == Role::kHead;
  EXPECT_TRUE(head_alias);
  EXPECT_EQ(inv.params()[*inv.find("model.decoder.layer_norm.weight")].role, Role::kHead);
  for (const auto& w : d.items()) EXPECT_NE(w.code, "config-layers-mismatch") << w.message;
}

// The six checkpoints of the second set: freeze_except_last_n n=2 trains exactly the last two
// layers of the language model (an encoder–decoder's: the decoder's), nothing else.
struct LastTwo {
  std::string folder, first, second;
};
class SecondSetLastTwo : public ::testing::TestWithParam<LastTwo> {};
TEST_P(SecondSetLastTwo, FreezeExceptLastTwoTrainsTheLanguageModelsLastTwoLayers) {
  const LastTwo& c = GetParam();
  auto r = test::compile_preset("freeze_except_last_n", kData + "/real-checkpoints/" + c.folder,
                                {"n=2"});
  ASSERT_TRUE(r.plan) << r.errors();
  const Bitset frozen = r.plan->frozen_at({0, 0});
  size_t trainable = 0;
  for (size_t i = 0; i < r.plan->inventory->params().size(); ++i) {
    const std::string& n = r.plan->inventory->params()[i].name;
    const bool want = n.rfind(c.first + ".", 0) == 0 || n.rfind(c.second + ".", 0) == 0;
    EXPECT_EQ(!frozen.test(i), want) << n;
    trainable += want;
  }
  EXPECT_GT(trainable, 0u);
  for (const auto& w : r.diags.items()) EXPECT_NE(w.code, "config-layers-mismatch") << w.message;
}
INSTANTIATE_TEST_SUITE_P(
    RealCheckpoints, SecondSetLastTwo,
    ::testing::Values(LastTwo{"qwen3-14b-mlx-4bit", "model.layers.38", "model.layers.39"},
                      LastTwo{"qwen-7b-chat-int4-gptq", "transformer.h.30", "transformer.h.31"},
                      LastTwo{"mimo-7b", "model.layers.34", "model.layers.35"},
                      LastTwo{"m2m100-slt", "model.decoder.layers.22", "model.decoder.layers.23"},
                      LastTwo{"llama3v", "llm.model.layers.30", "llm.model.layers.31"},
                      LastTwo{"logics-thinking-8b", "model.layers.34", "model.layers.35"}),
    [](const auto& info) {
      std::string n = info.param.folder;
      for (auto& ch : n)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

// A family carries the structure (its `structure:` block): a llama-family checkpoint with a
// second stack of the same count and no connector — names and counts cannot tell which is the
// language model; the family's trunk does, and the other stack becomes a tower. A manifest keeps
// what the family said.
TEST(Family, ItsStructureDecidesWhatNamesAndCountsCannot) {
  const auto dir = fresh_dir("lfz-structure");
  std::ofstream(dir / "config.json")
      << R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100,
      "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2})";
  nlohmann::json wm = nlohmann::json::object();
  Diagnostics fd;
  auto fam = load_model((dir / "config.json").string(), fd);
  ASSERT_TRUE(fam) << format_diagnostics(fd);
  for (const auto& p : fam->params()) wm[p.name] = "model.safetensors";
  for (int i = 0; i < 2; ++i)
    wm["adapter.blocks." + std::to_string(i) + ".w"] = "model.safetensors";
  std::ofstream(dir / "model.safetensors.index.json")
      << nlohmann::json{{"metadata", nlohmann::json::object()}, {"weight_map", wm}}.dump();
  Diagnostics d;
  Inventory inv = load_ok((dir / "model.safetensors.index.json").string(), d);
  ASSERT_FALSE(inv.facts().family_structure.empty());
  Inventory back = *parse_manifest(inventory_json(inv), "m.json", d);
  EXPECT_EQ(back.facts().family_structure.size(), inv.facts().family_structure.size());
  for (Inventory* x : {&inv, &back}) {
    discover_layers(*x, DiscoveryPatterns::shipped(), d);
    EXPECT_EQ(x->num_layers(), 2);
    ASSERT_EQ(x->towers.size(), 1u);
    EXPECT_EQ(x->towers[0].root, "adapter");
    EXPECT_NE(x->towers[0].found_by.find("the family's structure"), std::string::npos)
        << x->towers[0].found_by;
  }
  EXPECT_FALSE(d.has_errors()) << format_diagnostics(d);
  // A hostile manifest's structure entry is an error, not ignored.
  Diagnostics bad;
  auto j = nlohmann::json::parse(inventory_json(inv));
  j["model"]["family_structure"].push_back({{"kind", "everything"}, {"pattern", ".*"}});
  EXPECT_FALSE(parse_manifest(j.dump(), "bad.json", bad).has_value() && !bad.has_errors());
  EXPECT_TRUE(bad.has_errors());
  std::filesystem::remove_all(dir);
}

// Audio-language composites from a config alone (transformers' Qwen2AudioForConditionalGeneration
// and VoxtralForConditionalGeneration): the language model's layers are the trunk, the
// Whisper-style encoder one audio tower, the projector its connector; the text model's ends are the
// ends.
TEST(Family, AudioLanguageModelsHaveAnAudioTowerAndATrunk) {
  struct Case {
    const char* config;
    int32_t trunk, tower;
  };
  for (const Case& c : {Case{"qwen2-audio-7b", 32, 32}, Case{"voxtral-mini-3b", 30, 32}}) {
    Diagnostics d;
    Inventory inv = load_ok(kData + "/configs/" + c.config + ".json", d);
    discover_layers(inv, DiscoveryPatterns::shipped(), d);
    EXPECT_EQ(d.count(Severity::kWarning), 0u) << c.config << format_diagnostics(d);
    EXPECT_EQ(inv.num_layers(), c.trunk) << c.config;
    ASSERT_EQ(inv.towers.size(), 1u) << c.config;
    EXPECT_EQ(inv.towers[0].root, "audio_tower");
    EXPECT_EQ(inv.towers[0].modality, "audio");
    EXPECT_EQ(inv.towers[0].num_layers, c.tower);
    ASSERT_EQ(inv.connectors.size(), 1u) << c.config;
    EXPECT_EQ(inv.connectors[0].root, "multi_modal_projector");
    auto role = [&](const char* name) { return inv.params()[*inv.find(name)].role; };
    EXPECT_EQ(role("language_model.model.embed_tokens.weight"), Role::kEmbeddings);
    EXPECT_EQ(role("language_model.lm_head.weight"), Role::kHead);
    EXPECT_EQ(role("audio_tower.conv1.weight"), Role::kTower);
    EXPECT_EQ(role("audio_tower.embed_positions.weight"), Role::kTower);
  }
}

}  // namespace
}  // namespace layerfreeze
