// PrefixCache (docs/CACHE.md): a run through the cache gives bit-identical losses and weights to
// the same run without it, for every preset with a frozen prefix and across the stage changes
// that move the boundary; dropout in the prefix is not cached unless `frozen_prefix: eval` makes
// it deterministic; spill, lower-precision storage, stale inputs and moved weights.
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "char_gpt.hpp"
#include "layerfreeze/executor.hpp"
#include "layerfreeze/prefix_cache.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace {

using test::write_rules;

constexpr int64_t kSamples = 24, kBatch = 8;

char_gpt::Config small(bool tied = true) {
  char_gpt::Config c;
  c.vocab = 64;
  c.ctx = 16;
  c.d = 32;
  c.layers = 4;
  c.heads = 2;
  c.tie_head = tied;
  return c;
}

// lp_lora with the prefix held in eval mode, as a rules file named `name`.
std::string lp_lora_prefix_eval(const std::string& name) {
  return write_rules(name,
                     "layerfreeze: 1\nextends: preset:lp_lora\noptions:\n  frozen_prefix: eval\n");
}

// The char GPT's forward in two parts, as PrefixCache asks.
PrefixContract contract_of(char_gpt::GPT& m) {
  return {[m](const torch::Tensor& x, int32_t k) mutable { return m->forward_prefix(x, k); },
          [m](const torch::Tensor& h, int32_t k) mutable { return m->forward_from(h, k); }};
}

struct CacheRun {
  std::vector<double> losses;
  std::vector<torch::Tensor> weights;
  PrefixCacheStats stats;
  std::vector<std::string> notes;
};

struct CacheSetup {
  std::string rules = "preset:lp_lora";
  PlanOptions options;
  char_gpt::Config config = small();
  int64_t epochs = 3;
  PrefixCacheOptions cache;
};

// `epochs` epochs over a fixed dataset, shuffled alike in every run; the model's forward either
// through a PrefixCache or directly (the model's own forward =
// forward_from(forward_prefix(x,0),0)).
CacheRun train(const CacheSetup& s, bool cached) {
  torch::manual_seed(7);
  char_gpt::GPT model(s.config);
  model->train();
  Executor ex(*model, s.rules, s.options);
  torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
  ex.attach_optimizer(opt);
  std::optional<PrefixCache> cache;
  if (cached) cache.emplace(ex, contract_of(model), s.cache);
  torch::manual_seed(11);
  const auto data = torch::randint(0, s.config.vocab, {kSamples, s.config.ctx + 1}, torch::kLong);
  CacheRun r;
  int64_t step = 0;
  for (int64_t e = 0; e < s.epochs; ++e) {
    ex.on_epoch_begin(e);
    const auto order = torch::randperm(kSamples, torch::kLong);
    for (int64_t b = 0; b < kSamples; b += kBatch) {
      ex.on_step(step++);
      auto idx = order.narrow(0, b, kBatch);
      auto batch = data.index_select(0, idx);
      auto in = batch.narrow(1, 0, s.config.ctx), target = batch.narrow(1, 1, s.config.ctx);
      std::vector<int64_t> ids(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + kBatch);
      auto logits = cached ? cache->forward(in, ids) : model->forward(in);
      auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, s.config.vocab}),
                                                       target.reshape({-1}));
      opt.zero_grad();
      loss.backward();
      ex.step_optimizer();
      r.losses.push_back(loss.item<double>());
    }
  }
  for (const auto& p : model->parameters()) r.weights.push_back(p.detach().clone());
  if (cache) {
    r.stats = cache->stats();
    r.notes = cache->notes();
  }
  return r;
}

void expect_identical(const CacheRun& a, const CacheRun& b) {
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], b.losses[i]) << "step " << i;
  ASSERT_EQ(a.weights.size(), b.weights.size());
  for (size_t i = 0; i < a.weights.size(); ++i)
    EXPECT_TRUE(torch::equal(a.weights[i], b.weights[i])) << "parameter " << i;
}

std::string join_notes(const CacheRun& r) {
  std::string s;
  for (const auto& n : r.notes) s += n + "\n";
  return s;
}

struct PresetCase {
  const char* name;
  std::string rules;
  std::vector<std::string> sets;
  bool tied;
  int64_t epochs;
  int64_t min_drops;  // boundary moves the run must cross
};

void PrintTo(const PresetCase& c, std::ostream* os) { *os << c.name; }

class PrefixCacheExact : public ::testing::TestWithParam<PresetCase> {};

TEST_P(PrefixCacheExact, BitIdenticalToUncached) {
  const PresetCase& c = GetParam();
  CacheSetup s;
  s.rules = c.rules.rfind("preset:", 0) == 0 ? c.rules : write_rules(c.name, c.rules);
  s.options.sets = c.sets;
  s.config = small(c.tied);
  s.epochs = c.epochs;
  const CacheRun plain = train(s, false), cached = train(s, true);
  expect_identical(plain, cached);
  // Not vacuous: the cache served rows, and followed every boundary move.
  EXPECT_GT(cached.stats.hits, 0) << join_notes(cached);
  EXPECT_GE(cached.stats.drops, c.min_drops) << join_notes(cached);
  EXPECT_EQ(cached.stats.uncached, 0) << join_notes(cached);
}

INSTANTIATE_TEST_SUITE_P(
    Presets, PrefixCacheExact,
    ::testing::Values(
        PresetCase{"lp_lora", "preset:lp_lora", {}, true, 3, 0},
        PresetCase{
            "freeze_first_n_embeddings",
            "layerfreeze: 1\nextends: preset:freeze_first_n\nrules:\n  - freeze: embeddings\n",
            {"n=2"},
            true,
            3,
            0},
        // Head first, then one layer every other epoch: the boundary goes 4, 3, 2, 1, 0, each
        // held two epochs (filled in the first, read in the second). A boundary held one epoch
        // is filled and never read: the plan says so.
        PresetCase{"gradual_unfreeze", "preset:gradual_unfreeze", {"total_epochs=9"}, false, 9, 4},
        PresetCase{"ulmfit", "preset:ulmfit", {"epochs_per_group=2"}, false, 8, 3}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(PrefixCache, NothingCacheableIsTheModelsOwnForward) {
  // freeze_first_n leaves the (tied) embeddings training: nothing before layer 0 is frozen.
  CacheSetup s;
  s.rules = "preset:freeze_first_n";
  s.options.sets = {"n=2"};
  const CacheRun plain = train(s, false), cached = train(s, true);
  expect_identical(plain, cached);
  EXPECT_EQ(cached.stats.hits, 0);
  EXPECT_EQ(cached.stats.boundary, -1);
  EXPECT_NE(cached.stats.refused.find("the embeddings train"), std::string::npos)
      << cached.stats.refused;
}

TEST(PrefixCache, DropoutInThePrefixIsNotCachedWithoutThePolicy) {
  CacheSetup s;
  s.config.resid_dropout = 0.2;
  const CacheRun plain = train(s, false), cached = train(s, true);
  expect_identical(plain, cached);  // the cache stood aside: the same draws, the same result
  EXPECT_EQ(cached.stats.hits, 0);
  EXPECT_NE(cached.stats.refused.find("transformer.h.0.drop (Dropout, p=0.2) in train mode"),
            std::string::npos)
      << cached.stats.refused;
}

TEST(PrefixCache, FrozenPrefixEvalMakesDropoutCacheable) {
  CacheSetup s;
  s.config.resid_dropout = 0.2;
  s.rules = lp_lora_prefix_eval("prefix_eval.yaml");
  const CacheRun plain = train(s, false), cached = train(s, true);
  expect_identical(plain, cached);
  EXPECT_GT(cached.stats.hits, 0) << join_notes(cached);
  EXPECT_TRUE(cached.stats.refused.empty()) << cached.stats.refused;
}

TEST(PrefixCache, PolicyHoldsOnlyThePrefixInEvalMode) {
  torch::manual_seed(1);
  auto c = small();
  c.resid_dropout = 0.1;
  char_gpt::GPT model(c);
  auto rules = lp_lora_prefix_eval("prefix_eval_modes.yaml");
  Executor ex(*model, rules);
  model->train();
  ex.enforce_modes();  // a trainer's model->train() is undone for the prefix only
  auto& h = *model->transformer->h;
  EXPECT_FALSE(h[0]->is_training());
  EXPECT_FALSE(h[1]->as<char_gpt::Block>()->drop->is_training());
  EXPECT_TRUE(h[2]->is_training());
  EXPECT_TRUE(h[3]->as<char_gpt::Block>()->drop->is_training());
  const CacheablePrefix p = ex.cacheable_prefix();
  EXPECT_EQ(p.layers, 2);
  EXPECT_TRUE(p.train_mode_effects.empty());
  // Without the policy the executor says what varies.
  Executor plain(*model, "preset:lp_lora");
  model->train();
  const CacheablePrefix q = plain.cacheable_prefix();
  ASSERT_EQ(q.train_mode_effects.size(), 2u);
  EXPECT_EQ(q.train_mode_effects[0], "transformer.h.0.drop (Dropout, p=0.1) in train mode");
}

TEST(PrefixCache, DropoutTheTreeCannotPlaceIsCaughtByTheCheck) {
  // GPT-2's transformer.drop sits beside the blocks: the module tree cannot say it runs in the
  // prefix; running the prefix twice does.
  CacheSetup s;
  s.config.embd_dropout = 0.2;
  s.rules = lp_lora_prefix_eval("prefix_eval2.yaml");
  const CacheRun plain = train(s, false), cached = train(s, true);
  expect_identical(plain, cached);
  EXPECT_EQ(cached.stats.hits, 0);
  EXPECT_NE(cached.stats.refused.find("gave two different outputs"), std::string::npos)
      << cached.stats.refused;
  EXPECT_NE(cached.stats.refused.find("transformer.drop (Dropout, p=0.2)"), std::string::npos)
      << cached.stats.refused;
}

TEST(PrefixCache, SpillsPastTheBudgetAndStaysExact) {
  CacheSetup s;
  s.cache.memory_budget = 10 * s.config.ctx * s.config.d * 4;  // ten samples in memory
  s.cache.spill_dir = testing::TempDir();
  const CacheRun plain = train(s, false), cached = train(s, true);
  expect_identical(plain, cached);
  EXPECT_EQ(cached.stats.entries, kSamples);
  EXPECT_EQ(cached.stats.memory_bytes, 10 * s.config.ctx * s.config.d * 4);
  EXPECT_EQ(cached.stats.spilled_bytes, (kSamples - 10) * s.config.ctx * s.config.d * 4);
  EXPECT_GT(cached.stats.hits, 0);
}

TEST(PrefixCache, WithoutSpillTheRestRunsEveryTime) {
  CacheSetup s;
  s.cache.memory_budget = 0;
  const CacheRun plain = train(s, false), cached = train(s, true);
  expect_identical(plain, cached);
  EXPECT_EQ(cached.stats.entries, 0);
  EXPECT_EQ(cached.stats.hits, 0);
  EXPECT_GT(cached.stats.uncached, 0);
  EXPECT_NE(join_notes(cached).find("no spill_dir"), std::string::npos) << join_notes(cached);
}

TEST(PrefixCache, HalfPrecisionStorageHalvesTheBytes) {
  CacheSetup s;
  s.cache.storage = "bfloat16";
  const CacheRun plain = train(s, false), cached = train(s, true);
  EXPECT_EQ(cached.stats.memory_bytes, kSamples * s.config.ctx * s.config.d * 2);
  // Not bit-identical (the next layer reads rounded values), but the same training.
  ASSERT_EQ(plain.losses.size(), cached.losses.size());
  for (size_t i = 0; i < plain.losses.size(); ++i)
    EXPECT_NEAR(plain.losses[i], cached.losses[i], 0.02) << "step " << i;
}

TEST(PrefixCache, BadOptionsAndContractAreRefused) {
  char_gpt::GPT model(small());
  Executor ex(*model, "preset:lp_lora");
  const PrefixContract ok = contract_of(model);
  PrefixCacheOptions bad;
  bad.storage = "bfloat61";
  try {
    PrefixCache c(ex, ok, bad);
    FAIL() << "accepted storage 'bfloat61'";
  } catch (const DiagnosticError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'bfloat16'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(PrefixCache(ex, PrefixContract{}), DiagnosticError);
  PrefixCache c(ex, ok);
  auto x = torch::randint(0, 64, {2, 16}, torch::kLong);
  EXPECT_THROW(c.forward(x, {1}), DiagnosticError);  // one id for two rows
  PrefixCache squashed(
      ex, {[&](const torch::Tensor& in, int32_t k) { return model->forward_prefix(in, k).sum(); },
           ok.forward_from});
  EXPECT_THROW(squashed.forward(x, {1, 2}), DiagnosticError);  // no batch dimension
}

TEST(PrefixCache, AStaleInputOrAMovedWeightIsRecomputed) {
  torch::manual_seed(3);
  char_gpt::GPT model(small());
  Executor ex(*model, "preset:lp_lora");
  PrefixCache cache(ex, contract_of(model));
  torch::NoGradGuard no_grad;
  auto a = torch::randint(0, 64, {2, 16}, torch::kLong),
       b = torch::randint(0, 64, {2, 16}, torch::kLong);
  cache.forward(a, {0, 1});
  // Sample 1 comes back with another input: recomputed, not served.
  auto mixed = torch::stack({a[0], b[1]});
  EXPECT_TRUE(torch::equal(cache.forward(mixed, {0, 1}), model->forward(mixed)));
  EXPECT_EQ(cache.stats().hits, 1);
  // A prefix weight written in place (a checkpoint loaded, a stray update): everything goes.
  model->transformer->h[0]->as<char_gpt::Block>()->mlp->c_fc->weight.add_(0.5);
  EXPECT_TRUE(torch::equal(cache.forward(mixed, {0, 1}), model->forward(mixed)));
  EXPECT_EQ(cache.stats().drops, 1);
  EXPECT_EQ(cache.stats().hits, 1);
  // Reads from other threads while it fills.
  std::vector<std::thread> readers;
  std::atomic<int> found{0};
  for (int t = 0; t < 4; ++t)
    readers.emplace_back([&] {
      for (int i = 0; i < 50; ++i)
        if (cache.lookup(0).defined()) ++found;
    });
  for (int i = 0; i < 10; ++i)
    cache.forward(torch::randint(0, 64, {2, 16}, torch::kLong), {100 + i, 200 + i});
  for (auto& t : readers) t.join();
  EXPECT_GT(found.load(), 0);
  EXPECT_TRUE(torch::equal(cache.lookup(0), model->forward_prefix(a, 2)[0]));
}

// A decoder with Hugging Face Llama names (model.embed_tokens, model.layers.N.{input_layernorm,
// self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm,
// lm_head), split as a PrefixContract asks.
struct RmsNormImpl : torch::nn::Module {
  explicit RmsNormImpl(int64_t d) { weight = register_parameter("weight", torch::ones({d})); }
  torch::Tensor forward(const torch::Tensor& x) {
    return x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-6) * weight;
  }
  torch::Tensor weight;
};
TORCH_MODULE(RmsNorm);

struct LlamaAttentionImpl : torch::nn::Module {
  explicit LlamaAttentionImpl(int64_t d) {
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
      proj.push_back(
          register_module(n, torch::nn::Linear(torch::nn::LinearOptions(d, d).bias(false))));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto q = proj[0]->forward(x), k = proj[1]->forward(x), v = proj[2]->forward(x);
    const int64_t T = x.size(1);
    auto att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(x.size(2)));
    att = torch::softmax(att.masked_fill(torch::ones({T, T}, torch::kBool).triu(1), -1e9), -1);
    return proj[3]->forward(torch::matmul(att, v));
  }
  std::vector<torch::nn::Linear> proj;
};
TORCH_MODULE(LlamaAttention);

struct LlamaMlpImpl : torch::nn::Module {
  explicit LlamaMlpImpl(int64_t d) {
    auto lin = [](int64_t in, int64_t out) {
      return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
    };
    gate_proj = register_module("gate_proj", lin(d, 2 * d));
    up_proj = register_module("up_proj", lin(d, 2 * d));
    down_proj = register_module("down_proj", lin(2 * d, d));
  }
  torch::Tensor forward(const torch::Tensor& h) {
    return down_proj->forward(torch::silu(gate_proj->forward(h)) * up_proj->forward(h));
  }
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMlp);

struct LlamaLayerImpl : torch::nn::Module {
  explicit LlamaLayerImpl(int64_t d) {
    input_layernorm = register_module("input_layernorm", RmsNorm(d));
    self_attn = register_module("self_attn", LlamaAttention(d));
    post_attention_layernorm = register_module("post_attention_layernorm", RmsNorm(d));
    mlp = register_module("mlp", LlamaMlp(d));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = x + self_attn->forward(input_layernorm->forward(x));
    return x + mlp->forward(post_attention_layernorm->forward(x));
  }
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
};
TORCH_MODULE(LlamaLayer);

struct LlamaModelImpl : torch::nn::Module {
  LlamaModelImpl(int64_t vocab, int64_t d, int64_t layers) {
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(vocab, d));
    this->layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < layers; ++i) this->layers->push_back(LlamaLayer(d));
    norm = register_module("norm", RmsNorm(d));
  }
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

struct LlamaForCausalLMImpl : torch::nn::Module {
  LlamaForCausalLMImpl(int64_t vocab, int64_t d, int64_t layers) {
    model = register_module("model", LlamaModel(vocab, d, layers));
    lm_head = register_module("lm_head",
                              torch::nn::Linear(torch::nn::LinearOptions(d, vocab).bias(false)));
  }
  torch::Tensor forward_prefix(const torch::Tensor& ids, int32_t k) {
    auto x = model->embed_tokens->forward(ids);
    for (int32_t i = 0; i < k; ++i) x = model->layers[i]->as<LlamaLayer>()->forward(x);
    return x;
  }
  torch::Tensor forward_from(torch::Tensor x, int32_t k) {
    for (size_t i = static_cast<size_t>(k); i < model->layers->size(); ++i)
      x = model->layers[i]->as<LlamaLayer>()->forward(x);
    return lm_head->forward(model->norm->forward(x));
  }
  LlamaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};
};
TORCH_MODULE(LlamaForCausalLM);

// `epochs` epochs of `steps` batches of 4 fixed samples through `forward`, with AdamW; returns
// every loss and the final weights.
template <class Model, class Loss>
CacheRun train_model(Model& model, const std::string& rules, const std::vector<std::string>& sets,
                     const torch::Tensor& data, bool cached, const PrefixContract& contract,
                     const Loss& loss_of, int64_t epochs = 3) {
  model->train();
  PlanOptions po;
  po.sets = sets;
  Executor ex(*model, rules, po);
  torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
  ex.attach_optimizer(opt);
  PrefixCache cache(ex, contract);
  CacheRun r;
  torch::manual_seed(4);
  const int64_t n = data.size(0);
  for (int64_t e = 0; e < epochs; ++e) {
    ex.on_epoch_begin(e);
    const auto order = torch::randperm(n, torch::kLong);
    for (int64_t b = 0; b < n; b += 4) {
      auto idx = order.narrow(0, b, 4);
      std::vector<int64_t> ids(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + 4);
      auto batch = data.index_select(0, idx);
      auto loss = loss_of(batch, [&](const torch::Tensor& x) {
        return cached ? cache.forward(x, ids)
                      : contract.forward_from(contract.forward_prefix(x, 0), 0);
      });
      opt.zero_grad();
      loss.backward();
      ex.step_optimizer();
      r.losses.push_back(loss.template item<double>());
    }
  }
  for (const auto& p : model->parameters()) r.weights.push_back(p.detach().clone());
  r.stats = cache.stats();
  r.notes = cache.notes();
  return r;
}

TEST(PrefixCache, AHuggingFaceNamedDecoder) {
  torch::manual_seed(9);
  const auto data = torch::randint(0, 48, {16, 13}, torch::kLong);
  auto run = [&](bool cached) {
    torch::manual_seed(2);
    LlamaForCausalLM m(48, 32, 4);
    PrefixContract c{[&](const torch::Tensor& x, int32_t k) { return m->forward_prefix(x, k); },
                     [&](const torch::Tensor& h, int32_t k) { return m->forward_from(h, k); }};
    return train_model(m, "preset:lp_lora", {}, data, cached, c,
                       [](const torch::Tensor& batch, auto&& fwd) {
                         auto in = batch.narrow(1, 0, 12), target = batch.narrow(1, 1, 12);
                         return torch::nn::functional::cross_entropy(fwd(in).reshape({-1, 48}),
                                                                     target.reshape({-1}));
                       });
  };
  const CacheRun plain = run(false), cached = run(true);
  expect_identical(plain, cached);
  EXPECT_EQ(cached.stats.boundary, 2);
  EXPECT_GT(cached.stats.hits, 0) << join_notes(cached);
}

// A torchvision-style CNN: the stem (conv1, bn1), then its stages layer1, layer2 as the trunk's
// layers. Its BatchNorm normalises with batch statistics in train mode: not cached until a policy
// holds the prefix in eval mode, then exact.
TEST(PrefixCache, ATorchvisionStyleCnnWithBatchNorm) {
  torch::manual_seed(9);
  const auto images = torch::randn({16, 3, 8, 8});
  const auto labels = torch::randint(0, 10, {16}, torch::kLong);
  auto run = [&](bool cached, const std::string& rules) {
    torch::manual_seed(2);
    test::ResNet m;
    PrefixContract c{[&](const torch::Tensor& x, int32_t k) {
                       auto y = torch::relu(m->bn1->forward(m->conv1->forward(x)));
                       if (k >= 1) y = m->layer1->forward(y);
                       if (k >= 2) y = m->layer2->forward(y);
                       return y;
                     },
                     [&](torch::Tensor y, int32_t k) {
                       if (k < 1) y = m->layer1->forward(y);
                       if (k < 2) y = m->layer2->forward(y);
                       return m->fc->forward(y.mean({2, 3}));
                     }};
    // The image batch carries its labels in a last "channel" row: split them off.
    const auto data =
        torch::cat({images.reshape({16, -1}), labels.unsqueeze(1).to(torch::kFloat)}, 1);
    return train_model(m, rules, {}, data, cached, c, [](const torch::Tensor& batch, auto&& fwd) {
      auto x = batch.narrow(1, 0, 3 * 8 * 8).reshape({-1, 3, 8, 8});
      auto y = batch.select(1, 3 * 8 * 8).to(torch::kLong);
      return torch::nn::functional::cross_entropy(fwd(x), y);
    });
  };
  const CacheRun plain = run(false, "preset:lp_lora"), refused = run(true, "preset:lp_lora");
  expect_identical(plain, refused);
  EXPECT_EQ(refused.stats.hits, 0);
  EXPECT_NE(refused.stats.refused.find("(BatchNorm2d) in train mode"), std::string::npos)
      << refused.stats.refused;
  const std::string eval = lp_lora_prefix_eval("cnn_eval.yaml");
  const CacheRun plain_eval = run(false, eval), cached = run(true, eval);
  expect_identical(plain_eval, cached);
  EXPECT_EQ(cached.stats.boundary, 1);
  EXPECT_GT(cached.stats.hits, 0) << join_notes(cached);
}

// The policy follows the boundary: a stage that opens a layer gives its modules the root's mode
// back; seeking back to a deeper boundary puts them in eval mode again.
TEST(PrefixCache, PolicyFollowsTheBoundaryThroughStagesAndSeeks) {
  torch::manual_seed(1);
  auto c = small(false);
  c.resid_dropout = 0.1;
  char_gpt::GPT model(c);
  model->train();
  PlanOptions po;
  po.sets = {"total_epochs=9"};
  auto rules = write_rules("prefix_eval_gradual.yaml",
                           "layerfreeze: 1\nextends: preset:gradual_unfreeze\noptions:\n"
                           "  frozen_prefix: eval\n");
  Executor ex(*model, rules, po);
  auto& h = *model->transformer->h;
  auto modes = [&] {
    std::string m;
    for (size_t i = 0; i < h.size(); ++i) m += h[i]->is_training() ? 'T' : 'e';
    return m;
  };
  EXPECT_EQ(modes(), "eeee");  // only the head trains: every block is in the prefix
  EXPECT_EQ(ex.cacheable_prefix().layers, 4);
  ex.on_epoch_begin(1);  // layer 3 opens
  EXPECT_EQ(modes(), "eeeT");
  ex.on_epoch_begin(2);
  ex.on_epoch_begin(3);  // layer 2 opens
  EXPECT_EQ(modes(), "eeTT");
  EXPECT_EQ(ex.cacheable_prefix().layers, 2);
  model->train();  // a trainer's call is undone for the prefix at the next step
  ex.on_step(0);
  EXPECT_EQ(modes(), "eeTT");
  ex.seek(0);  // back to the start (a resumed run): the blocks go back into eval mode
  EXPECT_EQ(modes(), "eeee");
  model->eval();  // validation: everything in eval mode, and the prefix stays so after
  ex.seek(3);
  EXPECT_EQ(modes(), "eeee") << "a module leaving the prefix takes the root's mode (eval)";
}

// A TorchScript module (scripts/make_torch_fixtures.py: GPT-2 names, tied head) exporting the two
// methods: lp_lora through the executor's TorchScript adapter, cached and not, bit for bit.
TEST(PrefixCache, ATorchScriptModuleWithExportedMethods) {
  const std::string path = std::string(LAYERFREEZE_TORCH_FIXTURES) + "/gpt2_tiny.pt";
  torch::manual_seed(9);
  const auto data = torch::randint(0, 64, {16, 17}, torch::kLong);
  auto run = [&](bool cached) {
    torch::jit::Module m = torch::jit::load(path);
    m.train();
    Executor ex(m, "preset:lp_lora");
    torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
    ex.attach_optimizer(opt);
    PrefixCache cache(ex, {[&](const torch::Tensor& x, int32_t k) {
                             return m.get_method("forward_prefix")({x, int64_t{k}}).toTensor();
                           },
                           [&](const torch::Tensor& h, int32_t k) {
                             return m.get_method("forward_from")({h, int64_t{k}}).toTensor();
                           }});
    CacheRun r;
    torch::manual_seed(4);
    for (int64_t e = 0; e < 3; ++e) {
      ex.on_epoch_begin(e);
      const auto order = torch::randperm(16, torch::kLong);
      for (int64_t b = 0; b < 16; b += 4) {
        auto idx = order.narrow(0, b, 4);
        std::vector<int64_t> ids(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + 4);
        auto batch = data.index_select(0, idx);
        auto in = batch.narrow(1, 0, 16), target = batch.narrow(1, 1, 16);
        auto logits = cached ? cache.forward(in, ids) : m.forward({in}).toTensor();
        auto loss =
            torch::nn::functional::cross_entropy(logits.reshape({-1, 64}), target.reshape({-1}));
        opt.zero_grad();
        loss.backward();
        ex.step_optimizer();
        r.losses.push_back(loss.item<double>());
      }
    }
    for (const auto& p : m.parameters()) r.weights.push_back(p.detach().clone());
    r.stats = cache.stats();
    return r;
  };
  const CacheRun plain = run(false), cached = run(true);
  expect_identical(plain, cached);
  EXPECT_EQ(cached.stats.boundary, 3);
  EXPECT_GT(cached.stats.hits, 0);
}

}  // namespace
}  // namespace layerfreeze
