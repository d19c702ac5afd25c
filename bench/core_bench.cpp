// Benchmarks of the core (docs/PERFORMANCE.md has the numbers and the command):
// parse + compile of the 101k-tensor MoE with 20 rules, an executor-time query with no change,
// layer discovery, and plan printing.
#include <benchmark/benchmark.h>

#include <re2/re2.h>
#include <re2/set.h>

#include <nlohmann/json.hpp>

#include "core/compiler.hpp"
#include "core/layer_discovery.hpp"
#include "core/rules_parser.hpp"
#include "layerfreeze/model_source.hpp"
#include "print/json_writer.hpp"
#include "print/plan_printer.hpp"
#include "sources/family.hpp"

namespace layerfreeze {
namespace {

// 20 rules of every kind a user writes: regexes (several per rule), layer ranges, roles,
// leaves, set algebra.
const char* kTwentyRules = R"(
layerfreeze: 1
rules:
  - freeze: all
  - unfreeze: {layers: "-8:"}
  - freeze: {regex: ['.*\.experts\.(1[0-9]|2[0-9])\..*', '.*shared_experts.*']}
  - unfreeze: {regex: '.*self_attn\.q_.*', case_sensitive: false}
  - freeze: {layers: {first_ratio: 0.25}}
  - unfreeze: {leaf: e_score_correction_bias}
  - freeze: {regex: '.*weight_scale_inv'}
  - unfreeze: {all_of: [{layers: "30:40"}, {regex: '.*mlp\.gate\..*'}]}
  - freeze: embeddings
  - unfreeze: head
  - freeze: {regex: '.*layers\.(3|4|5)\.mlp\.experts\.[0-9]+\.down_proj\..*'}
  - unfreeze: {layers: [1, 3, 5, "10:20:2"]}
  - freeze: {module_type: '.*RMSNorm'}
  - unfreeze: {regex: '.*input_layernorm.*'}
  - freeze: {layers: {last: 2}, except: {leaf: bias}}
  - unfreeze: {regex: ['.*kv_a_.*', '.*kv_b_.*']}
  - freeze: {any_of: [{regex: '.*experts\.25[0-5]\..*'}, {regex: '.*experts\.0\..*'}]}
  - unfreeze: {regex: '.*o_proj.*'}
  - freeze: {regex: '.*(up|gate)_proj\.weight'}
  - unfreeze: {layers: "60:"}
)";

const Inventory& moe() {
  static const Inventory inv = *builtin_model("moe-100k");
  return inv;
}

void BM_ParseAndCompileMoe20Rules(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    Inventory copy = moe();
    state.ResumeTiming();
    Diagnostics d;
    SourceTexts src;
    RulesLoader loader(d, src);
    auto s = loader.load_text(kTwentyRules, "bench.yaml");
    auto plan = compile(*s, std::move(copy), {}, d);
    if (!plan) state.SkipWithError("compile failed");
    benchmark::DoNotOptimize(plan);
    state.PauseTiming();  // freeing 101k parameter records is not compiling
    plan.reset();
    state.ResumeTiming();
  }
  state.counters["tensors"] = static_cast<double>(moe().params().size());
}
BENCHMARK(BM_ParseAndCompileMoe20Rules)->Unit(benchmark::kMillisecond);

void BM_DiscoverMoe(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    Inventory copy = moe();
    state.ResumeTiming();
    Diagnostics d;
    discover_layers(copy, DiscoveryPatterns::shipped(), d);
    benchmark::DoNotOptimize(copy);
    state.PauseTiming();
    copy = Inventory();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_DiscoverMoe)->Unit(benchmark::kMillisecond);

CompiledPlan compiled(const std::string& preset, const std::string& model,
                      std::vector<std::string> sets) {
  Diagnostics d;
  SourceTexts src;
  RulesLoader loader(d, src);
  auto s = loader.load("preset:" + preset);
  PlanOptions o;
  o.sets = std::move(sets);
  return *compile(*s, *load_model(model, d), o, d);
}

// What an executor pays per training step when no stage fires.
void BM_CursorNoChange(benchmark::State& state) {
  static const CompiledPlan plan =
      compiled("gradual_unfreeze", "builtin:moe-100k", {"total_epochs=10"});
  PlanCursor cur(plan);
  cur.seek({2, 0});
  int64_t step = 0;
  for (auto _ : state) {
    bool changed = cur.seek({2, ++step % 1000});
    benchmark::DoNotOptimize(changed);
  }
}
BENCHMARK(BM_CursorNoChange);

// The state at a time from scratch (what `seek` costs at a stage change) on 101k tensors.
void BM_FrozenAtMoe(benchmark::State& state) {
  static const CompiledPlan plan =
      compiled("gradual_unfreeze", "builtin:moe-100k", {"total_epochs=10"});
  for (auto _ : state) benchmark::DoNotOptimize(plan.frozen_at({5, 0}));
}
BENCHMARK(BM_FrozenAtMoe)->Unit(benchmark::kMicrosecond);

void BM_PlanTextGpt2Gradual(benchmark::State& state) {
  static const CompiledPlan plan =
      compiled("gradual_unfreeze", "builtin:gpt2", {"total_epochs=10"});
  for (auto _ : state) {
    std::string t = plan_text(summarize(plan, OptimizerKind::AdamW, {10, -1}));
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_PlanTextGpt2Gradual)->Unit(benchmark::kMicrosecond);

void BM_PlanJsonMoeLpLora(benchmark::State& state) {
  static const CompiledPlan plan = compiled("lp_lora", "builtin:moe-100k", {});
  for (auto _ : state) {
    std::string t = plan_json(summarize(plan, OptimizerKind::AdamW, {1, -1}));
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_PlanJsonMoeLpLora)->Unit(benchmark::kMillisecond);

// The largest JSON the tool writes is a list of every parameter (inspect --format json, a
// plan's frozen lists). The same document — name, shape, dtype, numel, role, layer of each of
// the 101,333 tensors, two-space indent — through the streaming JsonWriter and through
// nlohmann-json's ordered_json + dump(2), to decide which the printers use.
const Inventory& moe_discovered() {
  static const Inventory inv = [] {
    Diagnostics d;
    Inventory i = *load_model("builtin:moe-100k", d);
    discover_layers(i, DiscoveryPatterns::shipped(), d);
    return i;
  }();
  return inv;
}

void BM_ParamsJsonWriter(benchmark::State& state) {
  const Inventory& inv = moe_discovered();
  for (auto _ : state) {
    JsonWriter j;
    j.begin_object().key("params").begin_array();
    for (const auto& p : inv.params()) {
      j.begin_object().field("name", p.name).key("shape").ints(p.shape).field("dtype", p.dtype);
      j.field("numel", p.numel).field("role", role_name(p.role)).field("layer", p.layer);
      j.end_object();
    }
    std::string t = j.end_array().end_object().take();
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_ParamsJsonWriter)->Unit(benchmark::kMillisecond);

void BM_ParamsJsonNlohmann(benchmark::State& state) {
  const Inventory& inv = moe_discovered();
  for (auto _ : state) {
    nlohmann::ordered_json params = nlohmann::ordered_json::array();
    for (const auto& p : inv.params())
      params.push_back({{"name", p.name},
                        {"shape", p.shape},
                        {"dtype", p.dtype},
                        {"numel", p.numel},
                        {"role", role_name(p.role)},
                        {"layer", p.layer}});
    nlohmann::ordered_json doc = {{"params", std::move(params)}};
    std::string t = doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_ParamsJsonNlohmann)->Unit(benchmark::kMillisecond);

// DeepSeek-V3 from its config.json alone (rules/models/deepseek-v3.json: 61 layers, 3 dense,
// 256 routed experts + 1 shared per MoE layer): parse the config and expand the family into an
// inventory of 45,395 tensors (the shipped families are parsed once per process, outside).
void BM_DeepSeekV3ConfigToInventory(benchmark::State& state) {
  shipped_families();
  for (auto _ : state) {
    Diagnostics d;
    auto inv = load_model("builtin:deepseek-v3", d);
    if (!inv) state.SkipWithError("expansion failed");
    benchmark::DoNotOptimize(inv);
  }
}
BENCHMARK(BM_DeepSeekV3ConfigToInventory)->Unit(benchmark::kMillisecond);

// ... and plan preset:lp_lora on it (discovery + compile).
void BM_DeepSeekV3PlanLpLora(benchmark::State& state) {
  Diagnostics d;
  static const Inventory inv = *load_model("builtin:deepseek-v3", d);
  for (auto _ : state) {
    state.PauseTiming();
    Inventory copy = inv;
    state.ResumeTiming();
    SourceTexts src;
    RulesLoader loader(d, src);
    auto s = loader.load("preset:lp_lora");
    auto plan = compile(*s, std::move(copy), {}, d);
    benchmark::DoNotOptimize(plan);
    state.PauseTiming();
    plan.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_DeepSeekV3PlanLpLora)->Unit(benchmark::kMillisecond);

// The floor under bench/vs_python.py's whole process with RE2 as the matcher: nothing but the
// 20 patterns of that script, anchored at both ends in one RE2::Set, over the 101,333 names of
// builtin:moe-100k (already built), one thread. No plan, no discovery, no output.
void BM_Re2SetFloorMoe20Patterns(benchmark::State& state) {
  const char* patterns[] = {
      R"(.*self_attn\.q_a_proj.*)",  R"(.*self_attn\.q_b_proj.*)", R"(.*self_attn\.kv_a_proj.*)",
      R"(.*self_attn\.kv_b_proj.*)", R"(.*self_attn\.o_proj.*)",   R"(.*_layernorm\.weight)",
      R"(.*experts\.[0-9]\..*)",     R"(.*experts\.1[0-9]\..*)",   R"(.*experts\.2[0-9]\..*)",
      R"(.*experts\.3[0-9]\..*)",    R"(.*experts\.4[0-9]\..*)",   R"(.*experts\.5[0-9]\..*)",
      R"(.*shared_experts\..*)",     R"(.*mlp\.gate\..*)",         R"(model\.layers\.[0-2]\..*)",
      R"(.*weight_scale_inv)",       R"(model\.embed_tokens\..*)", R"(lm_head\..*)",
      R"(model\.norm\..*)",          R"(.*\.down_proj\.weight)"};
  const Inventory& inv = moe();
  size_t hits = 0;
  for (auto _ : state) {
    RE2::Options options;
    options.set_log_errors(false);
    RE2::Set set(options, RE2::ANCHOR_BOTH);
    for (const char* p : patterns) set.Add(p, nullptr);
    set.Compile();
    std::vector<int> matched;
    hits = 0;
    for (const Param& p : inv.params()) {
      matched.clear();
      hits += set.Match(p.name, &matched);
    }
    benchmark::DoNotOptimize(hits);
  }
  state.counters["selected"] = static_cast<double>(hits);
}
BENCHMARK(BM_Re2SetFloorMoe20Patterns)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace layerfreeze

BENCHMARK_MAIN();
