// Real architectures end to end (scripts/make_arch_fixtures.py): for every family — torchvision
// models and re-creations of Hugging Face ones with their exact names, order and tying — and every
// preset, the plan from the TorchScript file, from its safetensors header and from its sharded
// index equals what the executor does to the loaded module, at every stage.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/jit/serialization/import.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "core/compiler.hpp"
#include "core/rules_parser.hpp"
#include "layerfreeze/executor.hpp"
#include "layerfreeze/model_source.hpp"
#include "print/plan_printer.hpp"

extern "C" int layerfreeze_torchscript_manifest(const char* path, char** manifest, char** error);

namespace layerfreeze {
namespace {

const std::vector<std::string> kFamilies = {"gpt2",     "llama", "mixtral", "gemma", "bert",   "t5",
                                            "gpt_neox", "opt",   "falcon",  "bloom", "phi",    "mpt",
                                            "resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0",
                                            "vit",      "swin",  "convnext"};

struct ArchPreset {
  std::string preset;
  std::vector<std::string> sets;
};

const std::vector<ArchPreset> kPresets = {
    {"freeze_all", {}},          {"freeze_first_n", {"n=2"}},       {"freeze_last_n", {"n=1"}},
    {"freeze_except_last_n", {"n=1"}}, {"freeze_embeddings", {}},  {"freeze_by_name", {"patterns=['.*attn.*', '.*conv.*']"}},
    {"lp_lora", {}},             {"gradual_unfreeze", {"total_epochs=4", "unfreeze_embeddings_at=2"}},
    {"ulmfit", {}},              {"bitfit", {}},                    {"norm_tuning", {}},
    {"lisa", {"active_layers=1", "interval_steps=2"}},
};

std::string path_of(const std::string& rel) {
  std::string p = std::string(LAYERFREEZE_ARCH_FIXTURES) + "/" + rel;
  // Fail loudly: the arch_fixtures test (scripts/make_arch_fixtures.py) writes these.
  EXPECT_TRUE(std::filesystem::exists(p)) << p << " is missing: run scripts/make_arch_fixtures.py";
  return p;
}

Inventory torchscript_inventory(const std::string& file) {
  char* manifest = nullptr;
  char* error = nullptr;
  EXPECT_EQ(layerfreeze_torchscript_manifest(file.c_str(), &manifest, &error), 0) << (error ? error : "");
  Diagnostics d;
  auto inv = parse_manifest(manifest ? manifest : "", file, d);
  std::free(manifest);
  std::free(error);
  EXPECT_TRUE(inv) << format_diagnostics(d);
  return inv ? *inv : Inventory();
}

Plan compile_arch_preset(const ArchPreset& p, const Inventory& inv) {
  Diagnostics d;
  SourceTexts src;
  RulesLoader loader(d, src);
  auto s = loader.load("preset:" + p.preset);
  CompileOptions o;
  o.sets = p.sets;
  auto plan = compile(*s, inv, o, d);
  EXPECT_TRUE(plan) << p.preset << " on " << inv.source << "\n" << format_diagnostics(d);
  return plan ? std::move(*plan) : Plan();
}

std::set<std::string> frozen_set(const Plan& plan, const Time& t) {
  std::set<std::string> out;
  plan.frozen_at(t).for_each([&](size_t i) { out.insert(plan.inventory->params[i].name); });
  return out;
}

// Presets whose result depends on what only a live module knows: module types (norm_tuning
// finds BatchNorm2d `downsample.1` or torchvision's `features.N.1` by type; a header has no types).
bool needs_module_types(const std::string& preset) { return preset == "norm_tuning"; }

class Architecture : public ::testing::TestWithParam<std::string> {};

TEST_P(Architecture, PlansFromEverySourceEqualTheExecutor) {
  const std::string family = GetParam();
  const std::string pt = path_of(family + ".pt");
  Inventory from_pt = torchscript_inventory(pt);
  Diagnostics d;
  auto from_st = load_model(path_of(family + ".safetensors"), d);
  auto from_index = load_model(path_of(family + "-sharded/model.safetensors.index.json"), d);
  ASSERT_TRUE(from_st && from_index) << format_diagnostics(d);
  EXPECT_TRUE(from_index->shapes_known());
  EXPECT_EQ(from_st->total_numel(), from_pt.total_numel());
  EXPECT_EQ(from_index->total_numel(), from_pt.total_numel());
  torch::jit::Module module = torch::jit::load(pt);
  for (const auto& p : kPresets) {
    Plan plan_pt = compile_arch_preset(p, from_pt);
    Plan plan_st = compile_arch_preset(p, *from_st);
    Plan plan_ix = compile_arch_preset(p, *from_index);
    PlanOptions po;
    po.sets = p.sets;
    Executor ex(module, "preset:" + p.preset, po);
    EXPECT_EQ(ex.fingerprint(), plan_pt.fingerprint()) << family << " " << p.preset;
    for (int64_t e = 0; e < 5; ++e) {
      Time t{e, e * 3};
      ex.seek(t.epoch, t.step);
      auto names = ex.frozen_names();
      std::set<std::string> live(names.begin(), names.end());
      EXPECT_EQ(frozen_set(plan_pt, t), live) << family << " " << p.preset << " (.pt) at epoch " << e;
      int64_t numel = 0;
      plan_pt.frozen_at(t).for_each([&](size_t i) { numel += plan_pt.inventory->params[i].numel; });
      EXPECT_EQ(numel, ex.frozen_numel()) << family << " " << p.preset;
      if (needs_module_types(p.preset)) {
        // Names alone find fewer norms than types do: what a header plan trains, the module trains.
        for (const auto& n : frozen_set(plan_pt, t)) EXPECT_TRUE(frozen_set(plan_st, t).count(n)) << family << " " << n;
        continue;
      }
      EXPECT_EQ(frozen_set(plan_st, t), live) << family << " " << p.preset << " (.safetensors) at epoch " << e;
      EXPECT_EQ(frozen_set(plan_ix, t), live) << family << " " << p.preset << " (sharded index) at epoch " << e;
    }
  }
}

TEST_P(Architecture, JsonPlanListsRolesAndLayers) {
  const std::string family = GetParam();
  Diagnostics d;
  for (const std::string& source : {family + ".pt", family + ".safetensors"}) {
    Inventory inv = source.size() > 3 && source.compare(source.size() - 3, 3, ".pt") == 0 ? torchscript_inventory(path_of(source))
                                                                                          : *load_model(path_of(source), d);
    Plan plan = compile_arch_preset({"lp_lora", {}}, inv);
    auto j = nlohmann::json::parse(plan_json(summarize(plan, OptimizerKind::AdamW, {1, -1})));
    ASSERT_EQ(j["params"].size(), inv.params.size());
    int64_t frozen_numel = 0;
    std::set<std::string> frozen_names;
    for (const auto& n : j["stages"][0]["frozen"]) frozen_names.insert(n.get<std::string>());
    for (const auto& p : j["params"]) {
      ASSERT_TRUE(p.contains("role") && p.contains("layer"));
      std::string role = p["role"];
      EXPECT_EQ(role == "layer", !p["layer"].is_null()) << p["name"];
      if (frozen_names.count(p["name"])) frozen_numel += p["numel"].get<int64_t>();
    }
    EXPECT_EQ(frozen_numel, j["stages"][0]["frozen_numel"].get<int64_t>()) << source;
    EXPECT_GT(j["model"]["num_layers"].get<int>(), 0) << source;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Architecture, ::testing::ValuesIn(kFamilies),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace layerfreeze
