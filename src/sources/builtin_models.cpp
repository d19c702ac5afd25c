// Built-in models: published checkpoints' config.json files (rules/models/) expanded by their
// model families (rules/families/) — one mechanism with `--model config.json` — plus two
// hand-built inventories: ResNet-50 (torchvision has no config.json) and moe-100k (a benchmark
// inventory of DeepSeek-V3's shape with fp8 scales as parameters). Totals equal the published
// parameter counts (tests pin them).
#include <functional>

#include <map>
#include "core/facts_builder.hpp"

#include "core/embedded_rules.hpp"
#include "layerfreeze/model_source.hpp"
#include "sources/checkpoint.hpp"
#include "sources/json_file.hpp"
#include "sources/readers.hpp"

namespace layerfreeze {

namespace {

class Builder {
 public:
  Builder(std::string source, std::string model_type, std::string dtype)
      : dtype_(std::move(dtype)) {
    inv_.source = std::move(source);
    inv_.model_type = std::move(model_type);
  }
  void param(const std::string& name, std::vector<int64_t> shape, const std::string& type,
             const std::string& dtype = "") {
    Tensor p;
    p.name = name;
    p.numel = 1;
    for (auto d : shape) p.numel *= d;
    p.shape = std::move(shape);
    p.dtype = dtype.empty() ? dtype_ : dtype;
    p.module_type = type;
    params_.push_back(std::move(p));
  }
  /// `param` named `prefix` + `leaf`, built in a buffer reused from call to call.
  void param(const std::string& prefix, const char* leaf, std::vector<int64_t> shape,
             const std::string& type, const std::string& dtype = "") {
    name_.assign(prefix);
    name_ += leaf;
    param(name_, std::move(shape), type, dtype);
  }
  void linear(const std::string& m, int64_t out, int64_t in, bool bias,
              const std::string& type = "Linear") {
    param(m + ".weight", {out, in}, type);
    if (bias) param(m + ".bias", {out}, type);
  }
  void norm(const std::string& m, int64_t d, const std::string& type, bool bias = true) {
    param(m + ".weight", {d}, type);
    if (bias) param(m + ".bias", {d}, type);
  }
  void tie(const std::string& alias, const std::string& canonical) {
    flush();
    FactsBuilder(inv_).add_alias(canonical, alias);
  }
  void reserve(size_t n) { params_.reserve(n); }
  ModelFacts take() {
    flush();
    return std::move(inv_);
  }

 private:
  void flush() { FactsBuilder(inv_).append(std::move(params_)), params_.clear(); }

  ModelFacts inv_;
  std::vector<Tensor> params_;  // added to the inventory in one pass (FactsBuilder::append)
  std::string dtype_;
  std::string name_;
};

ModelFacts resnet50() {
  Builder b("builtin:resnet50", "ResNet", "float32");
  auto conv = [&](const std::string& m, int64_t out, int64_t in, int64_t k) {
    b.param(m + ".weight", {out, in, k, k}, "Conv2d");
  };
  auto bn = [&](const std::string& m, int64_t c) { b.norm(m, c, "BatchNorm2d"); };
  conv("conv1", 64, 3, 7);
  bn("bn1", 64);
  const int blocks[4] = {3, 4, 6, 3};
  int64_t inplanes = 64;
  for (int s = 0; s < 4; ++s) {
    int64_t planes = 64LL << s;
    for (int i = 0; i < blocks[s]; ++i) {
      std::string m = "layer" + std::to_string(s + 1) + "." + std::to_string(i);
      conv(m + ".conv1", planes, inplanes, 1);
      bn(m + ".bn1", planes);
      conv(m + ".conv2", planes, planes, 3);
      bn(m + ".bn2", planes);
      conv(m + ".conv3", planes * 4, planes, 1);
      bn(m + ".bn3", planes * 4);
      if (i == 0) {
        conv(m + ".downsample.0", planes * 4, inplanes, 1);
        bn(m + ".downsample.1", planes * 4);
      }
      inplanes = planes * 4;
    }
  }
  b.linear("fc", 1000, 2048, true);
  return b.take();
}

// DeepSeek-V3-shaped mixture of experts (fp8 weights with block scales, 256 routed experts and
// one shared expert per MoE layer): 3 dense + 65 MoE layers, 101,333 tensors. For benchmarks.
ModelFacts moe_100k() {
  Builder b("builtin:moe-100k", "DeepseekV3ForCausalLM", "float8_e4m3fn");
  b.reserve(101333);
  const int64_t d = 7168, vocab = 129280, dense_ffn = 18432, moe_ffn = 2048, experts = 256;
  const std::string linear = "Linear", norm = "DeepseekV3RMSNorm", gate = "MoEGate";
  const std::string f32 = "float32", bf16 = "bfloat16";
  std::string m;  // the module being added, grown and cut back in place
  auto fp8 = [&](const char* leaf, int64_t out, int64_t in) {
    const size_t at = m.size();
    m += leaf;
    b.param(m, ".weight", {out, in}, linear);
    b.param(m, ".weight_scale_inv", {(out + 127) / 128, (in + 127) / 128}, linear, f32);
    m.resize(at);
  };
  auto rms = [&](const char* leaf, int64_t n) { b.param(m, leaf, {n}, norm, bf16); };
  auto mlp = [&](int64_t ffn) {
    fp8(".gate_proj", ffn, d);
    fp8(".up_proj", ffn, d);
    fp8(".down_proj", d, ffn);
  };
  b.param("model.embed_tokens.weight", {vocab, d}, "Embedding", bf16);
  for (int i = 0; i < 68; ++i) {
    m = "model.layers." + std::to_string(i);
    const size_t layer = m.size();
    fp8(".self_attn.q_a_proj", 1536, d);
    rms(".self_attn.q_a_layernorm.weight", 1536);
    fp8(".self_attn.q_b_proj", 128 * 192, 1536);
    fp8(".self_attn.kv_a_proj_with_mqa", 512 + 64, d);
    rms(".self_attn.kv_a_layernorm.weight", 512);
    fp8(".self_attn.kv_b_proj", 128 * 256, 512);
    fp8(".self_attn.o_proj", d, 128 * 128);
    if (i < 3) {
      m += ".mlp";
      mlp(dense_ffn);
    } else {
      b.param(m, ".mlp.gate.weight", {experts, d}, gate, bf16);
      b.param(m, ".mlp.gate.e_score_correction_bias", {experts}, gate, f32);
      m += ".mlp.shared_experts";
      mlp(moe_ffn);
      for (int e = 0; e < experts; ++e) {
        m.resize(layer);
        m += ".mlp.experts.";
        m += std::to_string(e);
        mlp(moe_ffn);
      }
    }
    m.resize(layer);
    rms(".input_layernorm.weight", d);
    rms(".post_attention_layernorm.weight", d);
  }
  b.param("model.norm.weight", {d}, norm, bf16);
  b.param("lm_head.weight", {vocab, d}, linear, bf16);
  return b.take();
}

// A shipped config through its family. The shipped files are tested; a failure is a defect.
ModelFacts from_config(const std::string& name, const char* text) {
  Diagnostics d;
  const std::string origin = "rules/models/" + name + ".json";
  auto j = parse_json_text(text, origin, "config", d);
  std::optional<ModelFacts> inv;
  if (j)
    if (auto cfg = model_config_from_json(*j, origin, d)) inv = apply_config(std::nullopt, *cfg, d);
  if (!inv) throw DiagnosticError(d);
  inv->source = "builtin:" + name;
  inv->config.clear();
  return std::move(*inv);
}

const std::map<std::string, std::function<ModelFacts()>>& registry() {
  static const std::map<std::string, std::function<ModelFacts()>> r = [] {
    std::map<std::string, std::function<ModelFacts()>> m = {{"resnet50", resnet50},
                                                            {"moe-100k", moe_100k}};
    for (const auto& f : embedded_rule_files()) {
      std::string n = f.name;
      if (n.rfind("models/", 0) != 0 || n.size() < 13) continue;
      std::string name = n.substr(7, n.size() - 12);
      const char* text = f.text;
      m[name] = [name, text] { return from_config(name, text); };
    }
    return m;
  }();
  return r;
}

}  // namespace

std::vector<std::string> builtin_model_names() {
  std::vector<std::string> names;
  for (const auto& [n, _] : registry()) names.push_back(n);
  return names;
}

std::optional<ModelFacts> builtin_facts(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) return std::nullopt;
  return it->second();
}

}  // namespace layerfreeze
