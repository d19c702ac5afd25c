// A small vision-language model, live: a patch-embedding vision tower of three blocks → a
// projector (the connector) → four decoder layers → a head tied to the token embeddings, with
// Hugging Face's Qwen2-VL names in registration (data-flow) order. The executor's frozen set must
// be the plan's, and autograd must agree with what the plan says of the backward pass
// (docs/ARCHITECTURES.md, "Multimodal models").
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/activation.h>

#include <set>

#include "analysis/plan_summary.hpp"
#include "layerfreeze/executor.hpp"
#include "layerfreeze/layerfreeze.hpp"
#include "print/plan_printer.hpp"
#include "torch/torch_models.hpp"

namespace layerfreeze {
namespace {

using test::Block;

constexpr int64_t kVocab = 32, kDim = 16, kVisionDim = 12, kPatch = 4;

struct PatchEmbedImpl : torch::nn::Module {
  PatchEmbedImpl() {
    proj = register_module(
        "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, kVisionDim, kPatch).stride(kPatch)));
  }
  torch::Tensor forward(const torch::Tensor& image) {
    return proj->forward(image).flatten(2).transpose(1, 2);
  }
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// Qwen2-VL's PatchMerger: a norm and a two-layer MLP into the language model's width.
struct MergerImpl : torch::nn::Module {
  MergerImpl() {
    ln_q = register_module("ln_q", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kVisionDim})));
    mlp = register_module(
        "mlp", torch::nn::Sequential(torch::nn::Linear(kVisionDim, kDim), torch::nn::GELU(),
                                     torch::nn::Linear(kDim, kDim)));
  }
  torch::Tensor forward(const torch::Tensor& x) { return mlp->forward(ln_q->forward(x)); }
  torch::nn::LayerNorm ln_q{nullptr};
  torch::nn::Sequential mlp{nullptr};
};
TORCH_MODULE(Merger);

struct VisionTowerImpl : torch::nn::Module {
  VisionTowerImpl() {
    patch_embed = register_module("patch_embed", PatchEmbed());
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (int i = 0; i < 3; ++i) blocks->push_back(Block(kVisionDim));
    merger = register_module("merger", Merger());
  }
  torch::Tensor forward(const torch::Tensor& image) {
    auto x = patch_embed->forward(image);
    for (const auto& b : *blocks) x = b->as<Block>()->forward(x);
    return merger->forward(x);
  }
  PatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  Merger merger{nullptr};
};
TORCH_MODULE(VisionTower);

struct LanguageModelImpl : torch::nn::Module {
  LanguageModelImpl() {
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(kVocab, kDim));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int i = 0; i < 4; ++i) layers->push_back(Block(kDim));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kDim})));
  }
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(LanguageModel);

struct TinyVLMImpl : torch::nn::Module {
  TinyVLMImpl() {
    visual = register_module("visual", VisionTower());
    model = register_module("model", LanguageModel());
    lm_head = register_module("lm_head", test::LMHead(model->embed_tokens->weight));
  }
  // Image tokens then text tokens into the decoder. `trunk_input` is what layer 0 reads.
  torch::Tensor forward(const torch::Tensor& image, const torch::Tensor& ids) {
    auto x = torch::cat({visual->forward(image), model->embed_tokens->forward(ids)}, 1);
    trunk_input = x;
    if (x.requires_grad()) x.retain_grad();
    for (const auto& b : *model->layers) x = b->as<Block>()->forward(x);
    return lm_head->forward(model->norm->forward(x));
  }
  VisionTower visual{nullptr};
  LanguageModel model{nullptr};
  test::LMHead lm_head{nullptr};
  torch::Tensor trunk_input;
};
TORCH_MODULE(TinyVLM);

// One backward pass on random pixels and tokens (no optimizer step: the test reads gradients).
void backward_once(TinyVLM& m) {
  torch::manual_seed(0);
  auto image = torch::randn({2, 3, 8, 8});
  auto ids = torch::randint(0, kVocab, {2, 5});
  auto logits = m->forward(image, ids);
  auto targets = torch::randint(0, kVocab, {2, logits.size(1)});
  torch::nn::functional::cross_entropy(logits.reshape({-1, kVocab}), targets.reshape({-1}))
      .backward();
}

bool has_grad(TinyVLM& m, const std::string& name) {
  for (const auto& p : m->named_parameters())
    if (p.key() == name)
      return p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0;
  ADD_FAILURE() << "no parameter " << name;
  return false;
}

std::string backward_line(const Executor& ex) {
  std::string text = ex.plan_text(0);
  auto at = text.find("backward: ");
  return at == std::string::npos ? "" : text.substr(at, text.find('\n', at) - at);
}

// What the module's own structure says must be frozen, next to what the executor froze.
void expect_frozen_exactly(TinyVLM& m, const Executor& ex, const std::set<std::string>& prefixes) {
  std::set<std::string> want, got;
  for (const auto& p : m->named_parameters()) {
    for (const auto& pre : prefixes)
      if (p.key().rfind(pre, 0) == 0) want.insert(p.key());
    if (!p.value().requires_grad()) got.insert(p.key());
  }
  EXPECT_EQ(got, want);
  // And the executor's frozen set is the plan's at the start.
  PlanState plan_state = ex.plan().state_at({0, 0});
  const Inventory& inv = ex.inventory();
  for (size_t i = 0; i < inv.params().size(); ++i)
    EXPECT_EQ(ex.is_frozen(i), plan_state.frozen[i]) << inv.params()[i].name;
}

TEST(VisionLanguage, DiscoveryFindsTheTrunkTheTowerAndTheConnector) {
  TinyVLM m;
  Executor ex(*m, "preset:freeze_all");
  const Inventory& inv = ex.inventory();
  EXPECT_EQ(inv.num_layers(), 4);
  EXPECT_EQ(get_num_layers(*m), 4);
  ASSERT_EQ(inv.towers.size(), 1u);
  EXPECT_EQ(inv.towers[0].root, "visual");
  EXPECT_EQ(inv.towers[0].modality, "vision");
  EXPECT_EQ(inv.towers[0].num_layers, 3);
  ASSERT_EQ(inv.connectors.size(), 1u);
  EXPECT_EQ(inv.connectors[0].root, "visual.merger");
  auto role = [&](const std::string& n) { return inv.params()[*inv.find(n)].role; };
  EXPECT_EQ(role("visual.patch_embed.proj.weight"), Role::kTower);
  EXPECT_EQ(role("visual.blocks.2.mlp.c_fc.weight"), Role::kTower);
  EXPECT_EQ(role("visual.merger.mlp.0.weight"), Role::kConnector);
  EXPECT_EQ(role("model.embed_tokens.weight"), Role::kEmbeddings);
  EXPECT_EQ(role("model.layers.0.attn.c_attn.weight"), Role::kLayer);
  EXPECT_EQ(role("model.norm.weight"), Role::kHead);
  // The trunk's layers are 0–3, whatever the tower registers before them.
  EXPECT_EQ(inv.params()[*inv.find("model.layers.0.attn.c_attn.weight")].layer, 0);
  std::string status = layer_status(*m, false);
  EXPECT_NE(status.find("Vision tower: FROZEN"), std::string::npos) << status;
  EXPECT_NE(status.find("Connector:    FROZEN"), std::string::npos) << status;
}

TEST(VisionLanguage, PresetsFreezeWhatTheModelsStructureSays) {
  {
    // LP-LoRA: the tower and the first half of the language model (and the tied embeddings);
    // the connector trains.
    TinyVLM m;
    Executor ex(*m, "preset:lp_lora");
    expect_frozen_exactly(m, ex,
                          {"visual.patch_embed", "visual.blocks", "model.layers.0.",
                           "model.layers.1.", "model.embed_tokens", "lm_head"});
  }
  {
    // Only the last trunk layer trains: the tower's last block and the connector do not.
    TinyVLM m;
    PlanOptions o;
    o.sets = {"n=1"};
    Executor ex(*m, "preset:freeze_except_last_n", o);
    expect_frozen_exactly(m, ex,
                          {"visual.", "model.embed_tokens", "lm_head", "model.norm",
                           "model.layers.0.", "model.layers.1.", "model.layers.2."});
  }
  {
    // Gradual unfreezing, epoch 0: only the head (the language model's final norm; lm_head is
    // the embeddings' tensor and follows them).
    TinyVLM m;
    PlanOptions o;
    o.sets = {"total_epochs=5"};
    Executor ex(*m, "preset:gradual_unfreeze", o);
    expect_frozen_exactly(m, ex, {"visual.", "model.embed_tokens", "lm_head", "model.layers."});
  }
  {
    // The seed API touches what it names: trunk layers 0–1, nothing of the tower.
    TinyVLM m;
    freeze_first_n_layers(*m, 2);
    for (const auto& p : m->named_parameters())
      EXPECT_EQ(p.value().requires_grad(), !(p.key().rfind("model.layers.0.", 0) == 0 ||
                                             p.key().rfind("model.layers.1.", 0) == 0))
          << p.key();
  }
}

TEST(VisionLanguage, ATrainableConnectorCarriesTheBackwardPassThroughFrozenLayers) {
  // LP-LoRA: layers 0–1 are frozen, but the connector trains, so layer 0's input needs a
  // gradient and the backward pass runs through both frozen layers.
  TinyVLM m;
  Executor ex(*m, "preset:lp_lora");
  EXPECT_NE(backward_line(ex).find("runs through every layer (0–3) and stops at the connector"),
            std::string::npos)
      << backward_line(ex);
  backward_once(m);
  ASSERT_TRUE(m->trunk_input.requires_grad());
  ASSERT_TRUE(m->trunk_input.grad().defined());
  EXPECT_GT(m->trunk_input.grad().abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(has_grad(m, "visual.merger.mlp.0.weight"));
  EXPECT_FALSE(
      m->model->layers[0]->as<Block>()->attn->c_attn->weight.grad().defined());  // frozen: no grad
  EXPECT_FALSE(m->visual->blocks[2]->as<Block>()->attn->c_attn->weight.grad().defined());
}

TEST(VisionLanguage, AFrozenConnectorLetsTheBackwardPassStopAtTheFirstTrainableLayer) {
  TinyVLM m;
  std::string rules = test::write_rules(
      "vlm_frozen_connector.yaml",
      "layerfreeze: 1\nname: t\nrules:\n  - freeze: [tower, connector, embeddings]\n"
      "  - freeze: {layers: {first: 2}}\n");
  Executor ex(*m, rules);
  EXPECT_NE(backward_line(ex).find("stops at layer 2 (model.layers.2)"), std::string::npos)
      << backward_line(ex);
  backward_once(m);
  // Nothing below layer 2 requires grad: layer 0's input gets no gradient.
  EXPECT_FALSE(m->trunk_input.requires_grad());
  EXPECT_FALSE(m->trunk_input.grad().defined());
  EXPECT_TRUE(has_grad(m, "model.layers.2.attn.c_attn.weight"));
}

TEST(VisionLanguage, ATrainableTowerLayerTakesTheBackwardPassIntoTheTower) {
  TinyVLM m;
  std::string rules = test::write_rules(
      "vlm_last_vision_block.yaml",
      "layerfreeze: 1\nname: t\nrules:\n  - freeze: all\n"
      "  - unfreeze: {stack: vision, layers: \"-1:\"}\n  - unfreeze: {layers: {last: 1}}\n");
  Executor ex(*m, rules);
  EXPECT_NE(backward_line(ex).find("into the vision tower 'visual', down to visual.blocks.2"),
            std::string::npos)
      << backward_line(ex);
  backward_once(m);
  EXPECT_TRUE(m->trunk_input.requires_grad());
  EXPECT_TRUE(has_grad(m, "visual.blocks.2.attn.c_attn.weight"));
  EXPECT_FALSE(m->visual->blocks[1]->as<Block>()->attn->c_attn->weight.grad().defined());
  EXPECT_FALSE(m->visual->merger->ln_q->weight.grad()
                   .defined());  // frozen, though the gradient passes through it
}

}  // namespace
}  // namespace layerfreeze
