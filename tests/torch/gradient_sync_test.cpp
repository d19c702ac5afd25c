// layerfreeze::distributed inside one process: Gloo groups over an in-memory HashStore, ranks
// as threads. Bucket layout and rebuilds, averaging, missing gradients, the all-parameters
// baseline, agreement and broadcast, and the configuration errors. (Whole processes on loopback
// are tests/distributed.)
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <cstdlib>
#include <functional>
#include <thread>

#include "api/plan_access.hpp"
#include "char_gpt.hpp"
#include "core/metric_triggers.hpp"
#include "esft/tiny_moe.hpp"
#include "layerfreeze/distributed.hpp"
#include "layerfreeze/prefix_cache.hpp"
#include "torch/compat.hpp"
#include "torch/compat_c10d.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace {

namespace dist = layerfreeze::distributed;
using test::GPT2LMHeadModel;
using test::write_rules;

// Runs `body(group, rank)` on `world` threads, each with its own Gloo group over one store.
void on_ranks(int world,
              const std::function<void(c10::intrusive_ptr<c10d::ProcessGroup>, int)>& body) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(30));
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        opts->threads = 1;
        c10::intrusive_ptr<c10d::ProcessGroup> g = compat::gloo_group(store, r, world, opts);
        body(g, r);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

const char* kStaged =
    "rules:\n"
    "  - freeze: [embeddings, {layers: \"0:2\"}]\n"
    "stages:\n"
    "  - at: {epoch: 1}\n"
    "    rules: [{unfreeze: {layers: \"1:2\"}}]\n";

// LibTorch's default generator is shared by every thread: models and data are made on the test's
// own thread, before the ranks start.
std::vector<GPT2LMHeadModel> models(int n, int64_t seed, bool same) {
  std::vector<GPT2LMHeadModel> out;
  for (int r = 0; r < n; ++r) {
    torch::manual_seed(same ? seed : seed + r);
    out.emplace_back();
  }
  return out;
}

std::vector<torch::Tensor> batches(int n, int64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> out;
  for (int i = 0; i < n; ++i) out.push_back(torch::randint(0, 64, {2, 8}));
  return out;
}

void backward(GPT2LMHeadModel& m, const torch::Tensor& idx) {
  torch::nn::functional::cross_entropy(m->forward(idx).view({-1, 64}), idx.view({-1})).backward();
}

int64_t trainable_bytes(const Executor& ex) {
  int64_t n = 0;
  for (const auto& t : ex.trainable_parameters())
    n += t.numel() * static_cast<int64_t>(t.element_size());
  return n;
}

TEST(GradientSync, BucketsHoldExactlyTheTrainableGradientsAndFollowStages) {
  auto ms = models(1, 0, true);
  auto data = batches(2, 1);
  on_ranks(1, [&](auto group, int) {
    GPT2LMHeadModel& m = ms[0];
    Executor ex(*m, write_rules("staged.yaml", kStaged));
    dist::GradientSyncOptions o;
    o.bucket_bytes = 4096;
    dist::GradientSync sync(group, ex, o);
    backward(m, data[0]);
    auto s = sync.synchronize();
    EXPECT_TRUE(s.rebuilt) << "the first call builds the buckets";
    auto sizes = sync.bucket_sizes();
    int64_t sum = 0, largest = 0;
    for (const auto& t : ex.trainable_parameters())
      largest = std::max<int64_t>(largest, t.numel() * static_cast<int64_t>(t.element_size()));
    for (int64_t b : sizes) {
      sum += b;
      EXPECT_LE(b, std::max<int64_t>(4096, largest))
          << "a bucket closes before it overflows (or holds one large tensor)";
    }
    EXPECT_EQ(sum, trainable_bytes(ex));
    EXPECT_GT(sizes.size(), 2u) << "small buckets split the trainable set";
    EXPECT_EQ(s.bytes, trainable_bytes(ex));
    EXPECT_EQ(s.buckets, static_cast<int64_t>(sizes.size()));
    EXPECT_EQ(static_cast<size_t>(s.tensors), ex.trainable_parameters().size());
    EXPECT_FALSE(sync.synchronize().rebuilt);

    const int64_t before = trainable_bytes(ex);
    ASSERT_TRUE(ex.on_epoch_begin(1));
    backward(m, data[1]);
    s = sync.synchronize();
    EXPECT_TRUE(s.rebuilt);
    EXPECT_EQ(s.bytes, trainable_bytes(ex));
    EXPECT_GT(s.bytes, before);
    EXPECT_EQ(sync.steps(), 3);
    EXPECT_EQ(sync.total_bytes(), 2 * before + s.bytes);
  });
}

TEST(GradientSync, AveragesTrainableGradientsAcrossRanksAndLeavesFrozenOnesAlone) {
  std::vector<std::map<std::string, torch::Tensor>> local(2), synced(2);
  std::vector<std::vector<std::string>> gradless(2);
  auto ms = models(2, 0, true);  // the same weights on both ranks
  auto data = batches(2, 10);    // different data per rank
  on_ranks(2, [&](auto group, int rank) {
    GPT2LMHeadModel& m = ms[static_cast<size_t>(rank)];
    Executor ex(*m, write_rules("staged-" + std::to_string(rank) + ".yaml", kStaged));
    dist::GradientSync sync(group, ex);
    backward(m, data[static_cast<size_t>(rank)]);
    // One trainable parameter got no gradient on rank 1 (a branch it did not take).
    if (rank == 1) m->named_parameters()["transformer.ln_f.bias"].mutable_grad().reset();
    for (const auto& p : m->named_parameters(true))
      if (p.value().grad().defined()) local[rank][p.key()] = p.value().grad().clone();
    sync.synchronize();
    for (const auto& p : m->named_parameters(true)) {
      if (p.value().grad().defined())
        synced[rank][p.key()] = p.value().grad().clone();
      else
        gradless[rank].push_back(p.key());
    }
  });
  ASSERT_FALSE(synced[0].empty());
  EXPECT_EQ(synced[0].size(), synced[1].size());
  for (const auto& [name, g] : synced[0]) {
    ASSERT_TRUE(synced[1].count(name)) << name;
    EXPECT_TRUE(torch::equal(g, synced[1][name])) << name << " differs between ranks";
    torch::Tensor a = local[0].at(name);
    torch::Tensor b = local[1].count(name) ? local[1][name] : torch::zeros_like(a);
    EXPECT_TRUE(torch::allclose(g, (a + b) / 2, 1e-6, 1e-7)) << name << " is not the average";
  }
  EXPECT_TRUE(synced[1].count("transformer.ln_f.bias"))
      << "a missing gradient is a zero, and then defined";
  // Frozen parameters (embeddings, layers 0-1) keep no gradient.
  EXPECT_EQ(gradless[0], gradless[1]);
  EXPECT_NE(std::find(gradless[0].begin(), gradless[0].end(), "transformer.wte.weight"),
            gradless[0].end());
  EXPECT_NE(std::find(gradless[0].begin(), gradless[0].end(), "transformer.h.0.attn.c_attn.weight"),
            gradless[0].end());
}

// Overlap launches buckets from gradient hooks during backward; the result must equal the plain
// round's bit for bit — through a stage change (hooks of the old layout) and gradient
// accumulation (two backward calls before one synchronize()).
TEST(GradientSync, OverlapEqualsThePlainRoundBitForBit) {
  auto data = batches(8, 21);
  std::map<bool, std::vector<std::vector<torch::Tensor>>> finals;  // overlap -> rank -> weights
  std::map<bool, std::vector<int64_t>> bytes;
  for (bool overlap : {false, true}) {
    auto ms = models(2, 0, true);
    finals[overlap].resize(2);
    on_ranks(2, [&](auto group, int rank) {
      GPT2LMHeadModel& m = ms[static_cast<size_t>(rank)];
      Executor ex(*m,
                  write_rules("overlap-" + std::to_string(overlap) + std::to_string(rank) + ".yaml",
                              kStaged));
      torch::optim::SGD opt(ex.trainable_parameters(),
                            torch::optim::SGDOptions(0.05).momentum(0.9));
      ex.attach_optimizer(opt);
      dist::GradientSyncOptions o;
      o.bucket_bytes = 2048;  // many buckets, launched one by one during backward
      o.overlap = overlap;
      dist::GradientSync sync(group, ex, o);
      EXPECT_GT(sync.bucket_sizes().size(), 3u);  // builds the layout (and the hooks) up front
      for (int step = 0; step < 4; ++step) {
        if (step == 2) ex.on_epoch_begin(1);  // a stage: layers 1 opens
        opt.zero_grad();
        backward(m, data[static_cast<size_t>(2 * step + rank)]);
        if (step == 3)
          backward(m, data[static_cast<size_t>((2 * step + rank + 1) % 8)]);  // accumulation
        auto st = sync.synchronize();
        if (rank == 0) bytes[overlap].push_back(st.bytes);
        EXPECT_EQ(st.rebuilt, step == 2) << "step " << step;
        // Steps 0 and 1: every bucket was launched during backward; the fallback steps none.
        if (overlap && step < 2)
          EXPECT_EQ(st.overlapped, st.buckets) << "step " << step;
        else
          EXPECT_EQ(st.overlapped, 0) << "step " << step;
        opt.step();
      }
      for (const auto& p : ex.parameters())
        finals[overlap][static_cast<size_t>(rank)].push_back(p.detach().clone());
    });
  }
  for (int rank = 0; rank < 2; ++rank)
    for (size_t i = 0; i < finals[false][0].size(); ++i)
      EXPECT_TRUE(torch::equal(finals[false][static_cast<size_t>(rank)][i],
                               finals[true][static_cast<size_t>(rank)][i]))
          << "rank " << rank << " parameter " << i;
  // Steps 0 and 1 overlap cleanly and send what the plain round sends; the stage change and the
  // accumulation step fall back (the latter after completing what backward launched).
  EXPECT_EQ(bytes[true][0], bytes[false][0]);
  EXPECT_EQ(bytes[true][1], bytes[false][1]);
  EXPECT_EQ(bytes[true][2], bytes[false][2]);
  EXPECT_GE(bytes[true][3], bytes[false][3]);
}

TEST(GradientSync, AllParametersBaselineSendsFrozenZerosButKeepsThemGradless) {
  auto ms = models(1, 0, true);
  auto data = batches(1, 3);
  on_ranks(1, [&](auto group, int) {
    GPT2LMHeadModel& m = ms[0];
    Executor ex(*m, write_rules("staged-all.yaml", kStaged));
    dist::GradientSyncOptions o;
    o.all_parameters = true;
    dist::GradientSync sync(group, ex, o);
    backward(m, data[0]);
    auto s = sync.synchronize();
    int64_t all = 0;
    for (const auto& t : ex.parameters()) all += t.numel() * static_cast<int64_t>(t.element_size());
    EXPECT_EQ(s.bytes, all);
    EXPECT_GT(s.bytes, trainable_bytes(ex));
    for (const auto& p : m->named_parameters(true))
      EXPECT_EQ(p.value().grad().defined(), p.value().requires_grad()) << p.key();
  });
}

// Masked fused expert tensors (docs/EXPERTS.md): a tensor frozen in part trains, so it is sent
// whole — its frozen slices as zeros (the executor's gradient hook ran before the sync saw the
// gradient) and its bytes counted in full. Ranks see different data; the frozen slices stay
// bit-identical on every rank, a mask that changes mid-run rebuilds the layout, and overlap
// equals the plain round.
TEST(GradientSync, MaskedExpertSlicesAreSentAsZerosAndStayFrozen) {
  const char* rules =
      "rules:\n"
      "  - freeze: [embeddings, {experts: [2]}]\n"
      "stages:\n"
      "  - at: {step: 2}\n"
      "    rules: [{freeze: {experts: [0], layers: [1]}}]\n";
  std::map<bool, std::vector<std::vector<torch::Tensor>>> finals;
  std::map<bool, std::vector<int64_t>> bytes;
  std::vector<torch::Tensor> start;
  for (bool overlap : {false, true}) {
    std::vector<tiny_moe::TinyMoe> ms;
    for (int r = 0; r < 2; ++r) {
      torch::manual_seed(0);  // the same weights on both ranks
      ms.emplace_back(tiny_moe::Config{});
    }
    torch::manual_seed(5);
    std::vector<torch::Tensor> data;
    for (int i = 0; i < 8; ++i) data.push_back(torch::randint(0, 96, {24}));
    if (start.empty())
      for (const auto& p : ms[0]->parameters()) start.push_back(p.detach().clone());
    finals[overlap].resize(2);
    on_ranks(2, [&](auto group, int rank) {
      auto& m = ms[static_cast<size_t>(rank)];
      Executor ex(
          *m,
          write_rules("masked-" + std::to_string(overlap) + std::to_string(rank) + ".yaml", rules));
      torch::optim::AdamW opt(ex.trainable_parameters(),
                              torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
      ex.attach_optimizer(opt);
      dist::GradientSyncOptions o;
      o.bucket_bytes = 8192;
      o.overlap = overlap;
      dist::GradientSync sync(group, ex, o);
      const Inventory& inv = ex.inventory();
      for (int64_t step = 0; step < 4; ++step) {
        const bool changed = ex.on_step(step);
        compat::zero_grad_in_place(opt);
        auto tokens = data[static_cast<size_t>(2 * step + rank)];
        torch::nn::functional::cross_entropy(m->forward(tokens.slice(0, 0, 23)),
                                             tokens.slice(0, 1, 24))
            .backward();
        auto st = sync.synchronize();
        EXPECT_EQ(st.rebuilt, step == 0 || (changed && step == 2)) << "step " << step;
        if (rank == 0) bytes[overlap].push_back(st.bytes);
        // Masked tensors are trainable, sent whole: the bytes are every trainable tensor's.
        EXPECT_EQ(st.bytes, trainable_bytes(ex)) << "step " << step;
        // The averaged gradient of a frozen slice is zero on every rank.
        auto params = ex.parameters();
        for (uint32_t i : PlanAccess::compiled(ex.plan()).slices.params)
          for (int32_t e : ex.frozen_experts(i))
            EXPECT_EQ(params[i].grad()[e].abs().max().item<float>(), 0.0f)
                << inv.params()[i].name << " expert " << e << " step " << step;
        ex.step_optimizer();
      }
      for (const auto& p : m->parameters())
        finals[overlap][static_cast<size_t>(rank)].push_back(p.detach().clone());
    });
    EXPECT_EQ(bytes[overlap][0], bytes[overlap][3]) << "masks change no tensor's byte count";
  }
  // Every rank ends with the same weights, overlap or not; frozen slices never moved.
  auto names = tiny_moe::TinyMoe(tiny_moe::Config{})->named_parameters(true).keys();
  for (size_t i = 0; i < names.size(); ++i) {
    for (bool overlap : {false, true})
      EXPECT_TRUE(torch::equal(finals[overlap][0][i], finals[overlap][1][i]))
          << names[i] << " overlap " << overlap;
    EXPECT_TRUE(torch::equal(finals[false][0][i], finals[true][0][i])) << names[i];
    if (names[i].find("mlp.experts.") != std::string::npos) {
      EXPECT_TRUE(torch::equal(finals[true][0][i][2], start[i][2])) << names[i];
      EXPECT_FALSE(torch::equal(finals[true][0][i][3], start[i][3])) << names[i];
    }
  }
}

TEST(GradientSync, NothingTrainableMeansNoCollective) {
  auto ms = models(2, 0, true);
  on_ranks(2, [&](auto group, int rank) {
    GPT2LMHeadModel& m = ms[static_cast<size_t>(rank)];
    Executor ex(*m, "preset:freeze_all");
    dist::GradientSync sync(group, ex);
    auto s = sync.synchronize();
    EXPECT_EQ(s.bytes, 0);
    EXPECT_EQ(s.buckets, 0);
  });
}

TEST(Broadcast, BuffersOnlyLeavesParametersAlone) {
  std::vector<torch::nn::BatchNorm1d> bns;
  for (int r = 0; r < 2; ++r) {
    bns.emplace_back(4);
    torch::NoGradGuard no_grad;
    bns.back()->running_mean.fill_(static_cast<double>(r + 1));
    bns.back()->weight.fill_(static_cast<double>(10 * (r + 1)));
  }
  on_ranks(2, [&](auto group, int rank) {
    dist::broadcast_buffers(*group, *bns[static_cast<size_t>(rank)]);
  });
  EXPECT_TRUE(torch::equal(bns[1]->running_mean, torch::ones({4})));
  EXPECT_TRUE(torch::equal(bns[1]->weight, torch::full({4}, 20.0))) << "parameters are not buffers";
}

std::string code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DiagnosticError& e) {
    return e.diagnostics().items()[0].code + ": " + e.diagnostics().items()[0].message;
  }
  return "";
}

// A TorchScript model exported by Python: agreement, broadcast and sync work on jit modules too,
// and the ranks end with equal weights after a step on different data.
TEST(GradientSync, TorchScriptModulesEndEqual) {
  const std::string path = std::string(LAYERFREEZE_TORCH_FIXTURES) + "/gpt2_tiny.pt";
  std::vector<torch::jit::Module> mods = {torch::jit::load(path), torch::jit::load(path)};
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : mods[1].parameters()) p.add_(1.0);  // rank 1 starts elsewhere
  }
  auto data = batches(2, 5);
  std::vector<std::vector<torch::Tensor>> finals(2);
  on_ranks(2, [&](auto group, int rank) {
    torch::jit::Module& m = mods[static_cast<size_t>(rank)];
    Executor ex(m, "preset:lp_lora");
    dist::agree_on_plan(*group, ex);
    dist::broadcast_parameters(*group, m);
    torch::optim::SGD opt(ex.trainable_parameters(), torch::optim::SGDOptions(0.1));
    dist::GradientSync sync(group, ex);
    for (int step = 0; step < 2; ++step) {
      opt.zero_grad();
      m.forward({data[static_cast<size_t>(rank)]}).toTensor().pow(2).mean().backward();
      sync.synchronize();
      opt.step();
    }
    for (const auto& p : ex.parameters())
      finals[static_cast<size_t>(rank)].push_back(p.detach().clone());
  });
  ASSERT_EQ(finals[0].size(), finals[1].size());
  for (size_t i = 0; i < finals[0].size(); ++i)
    EXPECT_TRUE(torch::equal(finals[0][i], finals[1][i])) << i;
}

struct SparseNetImpl : torch::nn::Module {
  SparseNetImpl() {
    embed = register_module("embed",
                            torch::nn::Embedding(torch::nn::EmbeddingOptions(10, 4).sparse(true)));
  }
  torch::nn::Embedding embed{nullptr};
};
TORCH_MODULE(SparseNet);

TEST(GradientSync, SparseGradientsAreRefusedByName) {
  SparseNet net;
  auto idx = torch::tensor({1, 2, 3});
  net->embed->forward(idx).sum().backward();
  on_ranks(1, [&](auto group, int) {
    Executor ex(*net, write_rules("none.yaml", "layerfreeze: 1\n"));
    dist::GradientSync sync(group, ex);
    EXPECT_EQ(code_of([&] { sync.synchronize(); }),
              "distributed-setup: 'embed.weight' has a sparse gradient; GradientSync averages "
              "dense gradients only");
  });
}

TEST(Agreement, SamePlanPassesAnotherFailsOnEveryRank) {
  auto same = models(2, 0, true);
  on_ranks(2, [&](auto group, int rank) {
    GPT2LMHeadModel& m = same[static_cast<size_t>(rank)];
    PlanOptions po;
    po.sets = {"n=2"};
    Executor ex(*m, "preset:freeze_first_n", po);
    EXPECT_NO_THROW(dist::agree_on_plan(*group, ex));
  });
  std::vector<std::string> messages(2);
  auto other = models(2, 0, true);
  on_ranks(2, [&](auto group, int rank) {
    GPT2LMHeadModel& m = other[static_cast<size_t>(rank)];
    PlanOptions po;
    po.sets = {rank == 0 ? "n=2" : "n=1"};
    Executor ex(*m, "preset:freeze_first_n", po);
    try {
      dist::agree_on_plan(*group, ex);
    } catch (const DiagnosticError& e) {
      EXPECT_EQ(e.diagnostics().items()[0].code, "plan-disagreement");
      messages[rank] = e.diagnostics().items()[0].message;
      const auto& notes = e.diagnostics().items()[0].notes;
      EXPECT_NE(
          std::find(notes.begin(), notes.end(), "rules parameter `n`: 2 on rank 0, 1 on rank 1"),
          notes.end());
    }
  });
  EXPECT_EQ(messages[0],
            "the ranks disagree on the freezing plan: rank 1 of 2 differs from rank 0");
  EXPECT_EQ(messages[0], messages[1]);
}

// Metric stages under data parallelism: each rank measures its own shard, so their values
// differ; report_metric averages them, and every rank changes its frozen set at the same step
// with the same saved state — where deciding on the local value would have split the ranks.
TEST(MetricAgreement, RanksWithDifferentValuesChangeTheirFrozenSetsTogether) {
  const std::string rules = write_rules(
      "plateau_ranks.yaml",
      "rules:\n  - freeze: all\n  - unfreeze: {regex: 'transformer\\.ln_f\\..*'}\n"
      "stages:\n  - at: {plateau: val_loss, patience: 2}\n    rules: [{unfreeze: {layers: "
      "\"-2:\"}}]\n  - at: {plateau: val_loss, patience: 1, min_delta: 0.05}\n"
      "    rules: [{unfreeze: all}]\n");
  const std::vector<double> common = {1.0, 0.9, 0.95, 0.93, 0.8, 0.85, 0.79, 0.78};
  auto local = [&](int rank, int64_t e) {  // ±0.25, cancelling over the ranks
    const double sign = ((rank % 2) ^ (e % 2)) ? 1.0 : -1.0;
    return common[static_cast<size_t>(e)] + sign * 0.25;
  };
  for (int world : {2, 4}) {
    std::vector<std::vector<int64_t>> changed_at(static_cast<size_t>(world));
    std::vector<std::string> states(static_cast<size_t>(world));
    auto ms = models(world, 0, true);
    on_ranks(world, [&](auto group, int rank) {
      GPT2LMHeadModel& m = ms[static_cast<size_t>(rank)];
      Executor ex(*m, rules);
      dist::agree_on_plan(*group, ex);
      auto& changes = changed_at[static_cast<size_t>(rank)];
      int64_t step = 0;
      for (int64_t e = 0; e < static_cast<int64_t>(common.size()); ++e) {
        if (ex.on_epoch_begin(e)) changes.push_back(step);
        for (int s = 0; s < 2; ++s, ++step)
          if (ex.on_step(step)) changes.push_back(step);
        dist::report_metric(*group, ex, "val_loss", local(rank, e));
      }
      states[static_cast<size_t>(rank)] = ex.state().to_string();
    });
    EXPECT_EQ(changed_at[0], (std::vector<int64_t>{8, 12})) << world << " ranks";
    for (int r = 1; r < world; ++r) {
      EXPECT_EQ(states[0], states[r]) << world << " ranks";
      EXPECT_EQ(changed_at[0], changed_at[r]) << world << " ranks";
    }
    // The mean plateaus like `common`: the stages fired at 4 and 6.
    EXPECT_NE(states[0].find("f=0@4p:"), std::string::npos) << states[0];
    EXPECT_NE(states[0].find("f=1@6p:"), std::string::npos) << states[0];
    // Alone, a rank's own values would have fired elsewhere.
    TriggerMonitor alone(PlanAccess::compiled(Executor(*ms[0], rules).plan()).watches);
    for (int64_t e = 0; e < static_cast<int64_t>(common.size()); ++e) {
      alone.boundary(e);
      alone.report("val_loss", local(0, e));
    }
    EXPECT_NE(alone.to_string(), states[0].substr(states[0].find("b=")));
  }
}

TEST(Broadcast, EveryRankEndsWithRankZerosWeightsAndBuffers) {
  std::vector<torch::Tensor> weights(2);
  auto ms = models(2, 100, false);  // rank r starts from seed 100 + r
  on_ranks(2, [&](auto group, int rank) {
    GPT2LMHeadModel& m = ms[static_cast<size_t>(rank)];
    dist::broadcast_parameters(*group, *m);
    weights[rank] = m->named_parameters()["transformer.h.1.mlp.c_fc.weight"].detach().clone();
  });
  EXPECT_TRUE(torch::equal(weights[0], weights[1]));
  torch::manual_seed(100);
  GPT2LMHeadModel reference;
  EXPECT_TRUE(
      torch::equal(weights[0], reference->named_parameters()["transformer.h.1.mlp.c_fc.weight"]));
}

TEST(GroupSetup, EnvironmentAndOptionsAreChecked) {
  ::unsetenv("RANK");
  ::setenv("WORLD_SIZE", "2", 1);
  EXPECT_EQ(code_of([] { dist::GroupOptions::from_env(); }),
            "distributed-env: environment variable RANK is not set");
  ::setenv("RANK", "2", 1);
  EXPECT_EQ(code_of([] { dist::GroupOptions::from_env(); }),
            "distributed-env: environment variable RANK='2' is not an integer in [0, 1]");
  ::setenv("RANK", "1", 1);
  ::setenv("MASTER_PORT", "http", 1);
  EXPECT_EQ(
      code_of([] { dist::GroupOptions::from_env(); }),
      "distributed-env: environment variable MASTER_PORT='http' is not an integer in [1, 65535]");
  ::setenv("MASTER_PORT", "29511", 1);
  ::setenv("MASTER_ADDR", "10.0.0.7", 1);
  auto o = dist::GroupOptions::from_env();
  EXPECT_EQ(o.rank, 1);
  EXPECT_EQ(o.world_size, 2);
  EXPECT_EQ(o.master_port, 29511);
  EXPECT_EQ(o.master_addr, "10.0.0.7");
  for (const char* v : {"RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR"}) ::unsetenv(v);

  dist::GroupOptions bad;
  bad.backend = "mpi";
  EXPECT_EQ(code_of([&] { dist::make_process_group(bad); }),
            "distributed-setup: unknown backend 'mpi'");
  bad.backend = "gloo";
  bad.rank = 3;
  bad.world_size = 2;
  EXPECT_EQ(code_of([&] { dist::make_process_group(bad); }),
            "distributed-setup: rank 3 is not in a group of 2");
#ifndef USE_C10D_NCCL
  dist::GroupOptions nccl;
  nccl.backend = "nccl";
  EXPECT_EQ(code_of([&] { dist::make_process_group(nccl); }),
            "distributed-setup: this LibTorch was built without NCCL");
#endif
  auto ms = models(1, 0, true);
  on_ranks(1, [&](auto group, int) {
    GPT2LMHeadModel& m = ms[0];
    Executor ex(*m, "preset:freeze_all");
    dist::GradientSyncOptions o;
    o.bucket_bytes = 0;
    EXPECT_EQ(code_of([&] { dist::GradientSync(group, ex, o); }),
              "distributed-setup: bucket_bytes must be positive (it is 0)");
  });
}

// Each rank caches its own shard of the samples (docs/CACHE.md, "Data parallelism"): gradients
// are synchronised as without the cache, so a 2-rank run with a PrefixCache on every rank gives
// bit-identical losses and weights to the same run without it — across a stage that moves the
// boundary (layer 3 → 2 at epoch 2: every rank drops its shard and refills it).
TEST(GradientSync, EachRankCachesItsShardAndTrainsAsWithoutTheCache) {
  const char* rules =
      "rules:\n"
      "  - freeze: [embeddings, {layers: \"0:3\"}]\n"
      "stages:\n"
      "  - at: {epoch: 2}\n"
      "    rules: [{unfreeze: {layers: \"2:3\"}}]\n";
  constexpr int kWorld = 2;
  constexpr int64_t kSamples = 16, kBatch = 4, kEpochs = 4;
  char_gpt::Config cfg;
  cfg.vocab = 64;
  cfg.ctx = 16;
  cfg.d = 32;
  cfg.heads = 2;
  // Data and every epoch's order are drawn here: the ranks' threads share LibTorch's generator.
  torch::manual_seed(5);
  const auto data = torch::randint(0, cfg.vocab, {kSamples, cfg.ctx + 1}, torch::kLong);
  std::vector<torch::Tensor> orders;
  for (int64_t e = 0; e < kEpochs; ++e) orders.push_back(torch::randperm(kSamples / kWorld));
  struct Result {
    std::vector<double> losses;
    std::vector<torch::Tensor> weights;
    PrefixCacheStats stats;
  };
  auto run = [&](bool cached) {
    std::vector<char_gpt::GPT> ms;
    for (int r = 0; r < kWorld; ++r) {
      torch::manual_seed(0);  // the same weights on every rank
      ms.emplace_back(cfg);
    }
    std::vector<Result> out(kWorld);
    on_ranks(kWorld, [&](auto group, int rank) {
      char_gpt::GPT& m = ms[static_cast<size_t>(rank)];
      Executor ex(*m, write_rules("cache-shard-" + std::to_string(rank) + ".yaml", rules));
      torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
      ex.attach_optimizer(opt);
      dist::GradientSync sync(group, ex);
      PrefixCache cache(ex,
                        {[&](const torch::Tensor& x, int32_t k) { return m->forward_prefix(x, k); },
                         [&](const torch::Tensor& h, int32_t k) { return m->forward_from(h, k); }});
      Result& res = out[static_cast<size_t>(rank)];
      int64_t step = 0;
      for (int64_t e = 0; e < kEpochs; ++e) {
        ex.on_epoch_begin(e);
        for (int64_t b = 0; b < kSamples / kWorld; b += kBatch, ++step) {
          ex.on_step(step);
          // This rank's shard: samples rank, rank + world, … (global ids).
          auto idx = orders[static_cast<size_t>(e)].narrow(0, b, kBatch) * kWorld + rank;
          auto batch = data.index_select(0, idx);
          auto in = batch.narrow(1, 0, cfg.ctx), target = batch.narrow(1, 1, cfg.ctx);
          std::vector<int64_t> ids(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + kBatch);
          auto logits = cached ? cache.forward(in, ids) : m->forward(in);
          auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, cfg.vocab}),
                                                           target.reshape({-1}));
          opt.zero_grad();
          loss.backward();
          sync.synchronize();
          ex.step_optimizer();
          res.losses.push_back(loss.item<double>());
        }
      }
      for (const auto& p : m->parameters()) res.weights.push_back(p.detach().clone());
      res.stats = cache.stats();
    });
    return out;
  };
  const auto plain = run(false), cached = run(true);
  for (int r = 0; r < kWorld; ++r) {
    const Result &a = plain[static_cast<size_t>(r)], &b = cached[static_cast<size_t>(r)];
    ASSERT_EQ(a.losses.size(), b.losses.size());
    for (size_t i = 0; i < a.losses.size(); ++i)
      EXPECT_EQ(a.losses[i], b.losses[i]) << "rank " << r << " step " << i;
    for (size_t i = 0; i < a.weights.size(); ++i) {
      EXPECT_TRUE(torch::equal(a.weights[i], b.weights[i])) << "rank " << r << " tensor " << i;
      EXPECT_TRUE(torch::equal(b.weights[i], cached[0].weights[i])) << "ranks differ: " << i;
    }
    EXPECT_EQ(b.stats.entries, kSamples / kWorld) << "a rank holds its own shard only";
    EXPECT_GT(b.stats.hits, 0);
    EXPECT_EQ(b.stats.drops, 1) << "the boundary moved once";
    EXPECT_EQ(b.stats.boundary, 2);
  }
}

}  // namespace
}  // namespace layerfreeze
