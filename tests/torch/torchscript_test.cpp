// TorchScript models exported by Debian's python3-torch: the live inventory (tied head, module
// types with ___torch_mangle_N stripped), the CLI's dlopen entry point, and — over every preset —
// the plan from the file against the executor on the loaded module, at every stage.
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>

#include <cstdlib>
#include <filesystem>

#include "api/plan_access.hpp"
#include "core/compiler.hpp"
#include "core/rules_parser.hpp"
#include "layerfreeze/executor.hpp"
#include "layerfreeze/layerfreeze.hpp"
#include "layerfreeze/model_source.hpp"
#include "torch/live_model.hpp"

extern "C" int layerfreeze_torchscript_manifest(const char* path, char** manifest, char** error);

namespace layerfreeze {
namespace {

std::string fixture(const std::string& name) {
  std::string path = std::string(LAYERFREEZE_TORCH_FIXTURES) + "/" + name;
  // Fail loudly: these files come from scripts/make_torch_fixtures.py (the torch_fixtures test).
  EXPECT_TRUE(std::filesystem::exists(path))
      << path << " is missing: run scripts/make_torch_fixtures.py";
  return path;
}

TEST(TorchScript, LiveInventoryOfAnExportedGpt2) {
  torch::jit::Module m = torch::jit::load(fixture("gpt2_tiny.pt"));
  LiveModel live = live_model(m);
  EXPECT_EQ(live.facts.model_type, "GPT2LMHeadModel");
  EXPECT_EQ(live.facts.tensors().size(), 2u + 6u * 12u + 2u);
  auto tied = live.facts.find("lm_head.weight");
  ASSERT_TRUE(tied);
  EXPECT_EQ(live.facts.tensors()[*tied].name, "transformer.wte.weight");
  EXPECT_EQ(
      live.facts.tensors()[*live.facts.find("transformer.h.0.attn.c_attn.weight")].module_type,
      "Linear");
  EXPECT_EQ(live.facts.tensors()[*live.facts.find("transformer.ln_f.weight")].module_type,
            "LayerNorm");
  EXPECT_EQ(short_type_name("__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear"),
            "Linear");
  EXPECT_EQ(get_num_layers(m), 6);
}

TEST(TorchScript, CliEntryPointWritesAManifest) {
  char* manifest = nullptr;
  char* error = nullptr;
  ASSERT_EQ(layerfreeze_torchscript_manifest(fixture("resnet_tiny.pt").c_str(), &manifest, &error),
            0)
      << (error ? error : "");
  Diagnostics d;
  auto inv = parse_manifest(manifest, "resnet_tiny.pt", d);
  std::free(manifest);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_EQ(inv->params()[*inv->find("layer1.0.bn1.weight")].module_type, "BatchNorm2d");
  EXPECT_EQ(layerfreeze_torchscript_manifest("/no/such/model.pt", &manifest, &error), 1);
  EXPECT_NE(std::string(error).find("cannot load TorchScript model '/no/such/model.pt'"),
            std::string::npos)
      << error;
  std::free(error);
}

struct PresetCase {
  const char* preset;
  std::vector<std::string> sets;
};

// `layerfreeze plan preset --model file.pt` (manifest through the adapter) and the executor on
// the loaded module freeze the same parameters at every time of the schedule.
TEST(TorchScript, PlanFromTheFileEqualsTheExecutorOnTheModule) {
  const std::vector<PresetCase> presets = {
      {"freeze_all", {}},
      {"freeze_first_n", {"n=2"}},
      {"freeze_last_n", {"n=3"}},
      {"freeze_except_last_n", {"n=1"}},
      {"freeze_embeddings", {}},
      {"freeze_by_name", {"patterns=['.*attn.*', '.*conv2.*']"}},
      {"lp_lora", {}},
      {"gradual_unfreeze", {"total_epochs=5", "unfreeze_embeddings_at=3"}},
      {"ulmfit", {}},
      {"bitfit", {}},
      {"norm_tuning", {}},
      {"lisa", {"active_layers=1", "interval_steps=3"}},
      {"badam", {"switch_every=3", "blocks=modules"}},
  };
  for (const char* file : {"gpt2_tiny.pt", "resnet_tiny.pt"}) {
    char* manifest = nullptr;
    char* error = nullptr;
    ASSERT_EQ(layerfreeze_torchscript_manifest(fixture(file).c_str(), &manifest, &error), 0);
    Diagnostics d;
    auto inv = parse_manifest(manifest, file, d);
    std::free(manifest);
    ASSERT_TRUE(inv);
    for (const auto& p : presets) {
      auto s = Strategy::load(std::string("preset:") + p.preset, d);
      PlanOptions o;
      o.sets = p.sets;
      auto public_plan = compile(*s, *inv, o, d);
      ASSERT_TRUE(public_plan) << p.preset << " on " << file << "\n" << format_diagnostics(d);
      const CompiledPlan* plan = &PlanAccess::compiled(*public_plan);
      torch::jit::Module m = torch::jit::load(fixture(file));
      PlanOptions po;
      po.sets = p.sets;
      Executor ex(m, std::string("preset:") + p.preset, po);
      EXPECT_EQ(ex.fingerprint(), plan->fingerprint()) << p.preset << " on " << file;
      // The plan compiled from the manifest binds to the module as it is.
      torch::jit::Module m2 = torch::jit::load(fixture(file));
      Executor bound(m2, *public_plan);
      EXPECT_EQ(bound.fingerprint(), plan->fingerprint());
      for (int64_t e = 0; e < 6; ++e) {
        for (int64_t s = 0; s < 10; s += 3) {
          ex.seek(e, e * 10 + s);
          std::vector<std::string> want;
          plan->frozen_at({e, e * 10 + s}).for_each([&](size_t i) {
            want.push_back(plan->inventory->params()[i].name);
          });
          EXPECT_EQ(ex.frozen_names(), want)
              << p.preset << " on " << file << " at epoch " << e << " step " << s;
          bound.seek(e, e * 10 + s);
          EXPECT_EQ(bound.frozen_names(), want) << "bound plan: " << p.preset << " on " << file;
          // And the module itself agrees.
          for (const auto& np : m.named_parameters()) {
            // An alias is frozen when its tensor's canonical name is.
            const std::string& canonical =
                plan->inventory->params()[*plan->inventory->find(np.name)].name;
            bool frozen = std::find(want.begin(), want.end(), canonical) != want.end();
            EXPECT_EQ(np.value.requires_grad(), !frozen) << np.name;
          }
        }
      }
    }
  }
}

TEST(TorchScript, TrainsAnExportedModelWithFrozenLayers) {
  torch::jit::Module m = torch::jit::load(fixture("gpt2_tiny.pt"));
  m.train();
  Executor ex(m, "preset:freeze_first_n", [] {
    PlanOptions po;
    po.sets = {"n=3"};
    return po;
  }());
  std::vector<torch::Tensor> params = ex.trainable_parameters();
  torch::optim::SGD opt(params, torch::optim::SGDOptions(0.1).momentum(0.9));
  ex.attach_optimizer(opt);
  torch::Tensor frozen_before, trained_before;
  for (const auto& p : m.named_parameters()) {
    if (p.name == "transformer.h.0.mlp.c_fc.weight") frozen_before = p.value.detach().clone();
    if (p.name == "transformer.h.5.mlp.c_fc.weight") trained_before = p.value.detach().clone();
  }
  for (int s = 0; s < 3; ++s) {
    auto idx = torch::randint(0, 64, {2, 8});
    auto logits = m.forward({idx}).toTensor();
    auto loss = torch::nn::functional::cross_entropy(logits.view({-1, 64}), idx.view({-1}));
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  for (const auto& p : m.named_parameters()) {
    if (p.name == "transformer.h.0.mlp.c_fc.weight") {
      EXPECT_TRUE(torch::equal(p.value, frozen_before));
    }
    if (p.name == "transformer.h.5.mlp.c_fc.weight") {
      EXPECT_FALSE(torch::equal(p.value, trained_before));
    }
  }
}

}  // namespace
}  // namespace layerfreeze
