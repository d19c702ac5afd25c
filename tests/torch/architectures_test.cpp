// Real architectures end to end (scripts/make_arch_fixtures.py): for every family — torchvision
// models and re-creations of Hugging Face ones with their exact names, order and tying — and every
// preset, the plan from the TorchScript file, from its safetensors header and from its sharded
// index equals what the executor does to the loaded module, at every stage.
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/import.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "api/plan_access.hpp"
#include "core/compiler.hpp"
#include "core/layer_discovery.hpp"
#include "core/rules_parser.hpp"
#include "layerfreeze/executor.hpp"
#include "layerfreeze/model_source.hpp"
#include "print/inventory_printer.hpp"
#include "print/plan_printer.hpp"

extern "C" int layerfreeze_torchscript_manifest(const char* path, char** manifest, char** error);

namespace layerfreeze {
namespace {

const std::vector<std::string> kFamilies = {"gpt2",
                                            "llama",
                                            "mixtral",
                                            "gemma",
                                            "bert",
                                            "t5",
                                            "gpt_neox",
                                            "opt",
                                            "falcon",
                                            "bloom",
                                            "phi",
                                            "mpt",
                                            "resnet18",
                                            "resnet50",
                                            "mobilenet_v3_small",
                                            "efficientnet_b0",
                                            "vit",
                                            "swin",
                                            "convnext"};

struct ArchPreset {
  std::string preset;
  std::vector<std::string> sets;
};

const std::vector<ArchPreset> kPresets = {
    {"freeze_all", {}},
    {"freeze_first_n", {"n=2"}},
    {"freeze_last_n", {"n=1"}},
    {"freeze_except_last_n", {"n=1"}},
    {"freeze_embeddings", {}},
    {"freeze_by_name", {"patterns=['.*attn.*', '.*conv.*']"}},
    {"lp_lora", {}},
    {"gradual_unfreeze", {"total_epochs=4", "unfreeze_embeddings_at=2"}},
    {"ulmfit", {}},
    {"bitfit", {}},
    {"norm_tuning", {}},
    {"lisa", {"active_layers=1", "interval_steps=2"}},
    {"badam", {"switch_every=2", "order=reshuffle"}},
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
  EXPECT_EQ(layerfreeze_torchscript_manifest(file.c_str(), &manifest, &error), 0)
      << (error ? error : "");
  Diagnostics d;
  auto inv = parse_manifest(manifest ? manifest : "", file, d);
  std::free(manifest);
  std::free(error);
  EXPECT_TRUE(inv) << format_diagnostics(d);
  return inv ? *inv : Inventory();
}

CompiledPlan compile_arch_preset(const ArchPreset& p, const Inventory& inv) {
  Diagnostics d;
  auto s = Strategy::load("preset:" + p.preset, d);
  PlanOptions o;
  o.sets = p.sets;
  auto plan = compile(*s, inv, o, d);
  EXPECT_TRUE(plan) << p.preset << " on " << inv.facts().source << "\n" << format_diagnostics(d);
  return plan ? PlanAccess::compiled(*plan) : CompiledPlan();
}

std::set<std::string> frozen_set(const CompiledPlan& plan, const Time& t) {
  std::set<std::string> out;
  plan.frozen_at(t).for_each([&](size_t i) { out.insert(plan.inventory->params()[i].name); });
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
    CompiledPlan plan_pt = compile_arch_preset(p, from_pt);
    CompiledPlan plan_st = compile_arch_preset(p, *from_st);
    CompiledPlan plan_ix = compile_arch_preset(p, *from_index);
    PlanOptions po;
    po.sets = p.sets;
    Executor ex(module, "preset:" + p.preset, po);
    EXPECT_EQ(ex.fingerprint(), plan_pt.fingerprint()) << family << " " << p.preset;
    for (int64_t e = 0; e < 5; ++e) {
      Time t{e, e * 3};
      ex.seek(t.epoch, t.step);
      auto names = ex.frozen_names();
      std::set<std::string> live(names.begin(), names.end());
      EXPECT_EQ(frozen_set(plan_pt, t), live)
          << family << " " << p.preset << " (.pt) at epoch " << e;
      int64_t numel = 0;
      plan_pt.frozen_at(t).for_each(
          [&](size_t i) { numel += plan_pt.inventory->params()[i].numel; });
      EXPECT_EQ(numel, ex.frozen_numel()) << family << " " << p.preset;
      if (needs_module_types(p.preset)) {
        // Names alone find fewer norms than types do: what a header plan trains, the module trains.
        for (const auto& n : frozen_set(plan_pt, t))
          EXPECT_TRUE(frozen_set(plan_st, t).count(n)) << family << " " << n;
        continue;
      }
      EXPECT_EQ(frozen_set(plan_st, t), live)
          << family << " " << p.preset << " (.safetensors) at epoch " << e;
      EXPECT_EQ(frozen_set(plan_ix, t), live)
          << family << " " << p.preset << " (sharded index) at epoch " << e;
    }
  }
}

TEST_P(Architecture, JsonPlanListsRolesAndLayers) {
  const std::string family = GetParam();
  Diagnostics d;
  for (const std::string& source : {family + ".pt", family + ".safetensors"}) {
    Inventory inv = source.size() > 3 && source.compare(source.size() - 3, 3, ".pt") == 0
                        ? torchscript_inventory(path_of(source))
                        : *load_model(path_of(source), d);
    CompiledPlan plan = compile_arch_preset({"lp_lora", {}}, inv);
    auto j = nlohmann::json::parse(plan_json(summarize(plan, OptimizerKind::AdamW, {1, -1})));
    ASSERT_EQ(j["params"].size(), inv.params().size());
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

TEST_P(Architecture, InspectShowsThePatternAndEdgeCasesWarn) {
  const std::string family = GetParam();
  Inventory inv = torchscript_inventory(path_of(family + ".pt"));
  Inventory discovered_inv = inv;
  Diagnostics d;
  discover_layers(discovered_inv, DiscoveryPatterns::shipped(), d);
  std::string text = inventory_text(discovered_inv, false);
  EXPECT_NE(text.find("· pattern '"), std::string::npos) << text;
  CompiledPlan emb = compile_arch_preset({"freeze_embeddings", {}}, inv);
  bool features_model =
      !discovered_inv.stacks.empty() && discovered_inv.stacks[0].container == "features";
  bool warned = false;
  for (const auto& w : emb.warnings)
    if (w.code == "no-match" && !w.notes.empty() &&
        w.notes[0].find("features.N models have no embeddings") != std::string::npos)
      warned = true;
  EXPECT_EQ(warned, features_model) << family;
  bool tied = false;
  for (const auto& p : discovered_inv.params()) tied = tied || !p.aliases.empty();
  CompiledPlan gradual = compile_arch_preset({"gradual_unfreeze", {"total_epochs=3"}}, inv);
  bool tied_warning = false;
  for (const auto& w : gradual.warnings) tied_warning = tied_warning || w.code == "tied-conflict";
  EXPECT_EQ(tied_warning, tied) << family;
}

// The table of docs/ARCHITECTURES.md, checked row by row against discovery on the fixtures.
std::string join_sorted(std::set<std::string> items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out.empty() ? "—" : out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '`')) s.erase(s.begin());
  while (!s.empty() && (s.back() == ' ' || s.back() == '`')) s.pop_back();
  return s;
}

TEST(ArchitecturesDoc, EveryRowMatchesDiscovery) {
  std::ifstream in(std::string(LAYERFREEZE_DOCS) + "/ARCHITECTURES.md");
  ASSERT_TRUE(in) << "docs/ARCHITECTURES.md is missing";
  std::string line;
  bool inside = false;
  std::set<std::string> checked;
  while (std::getline(in, line)) {
    if (line.find("architectures-table: begin") != std::string::npos) inside = true;
    if (line.find("architectures-table: end") != std::string::npos) break;
    if (!inside || line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> cells;
    size_t start = 1;
    for (size_t bar; (bar = line.find('|', start)) != std::string::npos; start = bar + 1)
      cells.push_back(trim(line.substr(start, bar - start)));
    ASSERT_EQ(cells.size(), 6u) << line;
    const std::string& family = cells[0];
    Inventory inv = torchscript_inventory(path_of(family + ".pt"));
    Diagnostics d;
    discover_layers(inv, DiscoveryPatterns::shipped(), d);
    std::string stacks;
    for (const auto& st : inv.stacks)
      stacks +=
          (stacks.empty() ? "" : ", ") + st.container + " (" + std::to_string(st.num_layers) + ")";
    std::map<Role, std::set<std::string>> owners;
    std::vector<std::string> tied;
    for (const auto& p : inv.params()) {
      owners[p.role].insert(p.module_path().empty() ? p.name : p.module_path());
      if (!p.aliases.empty()) {
        std::string t = p.name;
        for (const auto& a : p.aliases) t += " = " + a;
        tied.push_back(t);
      }
    }
    std::string tied_text;
    for (const auto& t : tied) tied_text += (tied_text.empty() ? "" : "; ") + t;
    EXPECT_EQ(cells[1], stacks) << family;
    EXPECT_EQ(cells[2], join_sorted(owners[Role::kEmbeddings])) << family;
    EXPECT_EQ(cells[3], join_sorted(owners[Role::kHead])) << family;
    EXPECT_EQ(cells[4], join_sorted(owners[Role::kOther])) << family;
    EXPECT_EQ(cells[5], tied_text.empty() ? "—" : tied_text) << family;
    checked.insert(family);
  }
  EXPECT_EQ(checked, std::set<std::string>(kFamilies.begin(), kFamilies.end()));
}

INSTANTIATE_TEST_SUITE_P(Families, Architecture, ::testing::ValuesIn(kFamilies),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace layerfreeze
