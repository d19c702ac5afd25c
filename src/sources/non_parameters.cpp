#include "sources/non_parameters.hpp"
#include "core/facts_builder.hpp"

#include <re2/re2.h>

#include <map>
#include <memory>
#include <set>

namespace layerfreeze {

namespace {

struct Rule {
  const char* pattern;  // RE2 full match on the name; group 1, when present, is the owner module
  const char* kind;
  const char* quantization;  // the method the metadata reveals, or nullptr for buffers
  const char* needs;         // a sibling name (owner + this) that must exist, or nullptr
};

const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
      {R"((.+)\.weight\.(absmax|quant_map|nested_absmax|nested_quant_map|quant_state\..+))",
       "quantization metadata (bitsandbytes)", "bitsandbytes 4-bit", nullptr},
      {R"((.+)\.(SCB|weight_format))", "quantization metadata (bitsandbytes)", "bitsandbytes 8-bit",
       ".weight"},
      {R"((.+)\.(qzeros|scales|g_idx))", "quantization metadata (GPTQ/AWQ)", "gptq", ".qweight"},
      // GPTQ's and AWQ's quantized linear layers register their bias as a buffer (even where
      // the unquantized layer has none: the quantizer writes zeros), so it never trains.
      {R"((.+)\.bias)", "buffer (bias of a GPTQ/AWQ quantized linear)", "gptq", ".qweight"},
      // MLX: every quantized module stores its packed `.weight` with `.scales` and `.biases`
      // (per group of the config's `quantization.group_size`).
      {R"((.+)\.(scales|biases))", "quantization metadata (MLX)", "mlx", ".weight"},
      {R"((.+)\.(weight_scale_inv|weight_scale|input_scale|activation_scale))",
       "quantization metadata (fp8 scales)", "fp8", ".weight"},
      {R"((.+)_scales)", "quantization metadata (MXFP4)", "mxfp4", "_blocks"},
      {R"((.+)\.rotary_emb\.inv_freq)", "buffer (rotary frequencies)", nullptr, nullptr},
      {R"(((?:.+\.)?)position_ids)", "buffer (position ids)", nullptr, nullptr},
      {R"((.+)\.(running_mean|running_var|num_batches_tracked))", "buffer (BatchNorm statistics)",
       nullptr, nullptr},
      {R"((.+\.)?(h\.[0-9]+\.attn)\.(bias|masked_bias))", "buffer (attention mask)", nullptr,
       nullptr},
      {R"((.+)\.attention\.(bias|masked_bias))", "buffer (attention mask)", nullptr, nullptr},
      // DeepSeek-V3's router bias (and the models built like it): it only picks the top-k
      // experts, is moved by the load-balancing rule, never by a gradient, and transformers
      // holds it as a buffer.
      {R"((.+)\.e_score_correction_bias)", "buffer (router score correction)", nullptr, nullptr},
  };
  return r;
}

}  // namespace

void separate_non_parameters(ModelFacts& inv) {
  static const std::vector<std::unique_ptr<RE2>> compiled = [] {
    std::vector<std::unique_ptr<RE2>> out;
    for (const auto& r : rules()) out.push_back(std::make_unique<RE2>(r.pattern));
    return out;
  }();
  // A cheap filter first: most names end in `.weight` and match nothing here.
  auto candidate = [](const std::string& n) {
    static const std::string w = ".weight";
    return !(n.size() >= w.size() && n.compare(n.size() - w.size(), w.size(), w) == 0);
  };
  std::set<std::string> packed_weights;
  std::string found_method;
  std::vector<bool> drop(inv.tensors().size(), false);
  for (size_t i = 0; i < inv.tensors().size(); ++i) {
    const Tensor& p = inv.tensors()[i];
    if (!candidate(p.name)) continue;
    for (size_t k = 0; k < rules().size(); ++k) {
      const Rule& r = rules()[k];
      std::string owner;
      if (!RE2::FullMatch(p.name, *compiled[k], &owner)) continue;
      if (r.needs && !inv.contains(owner + r.needs)) continue;
      if (std::string(r.kind).find("attention mask") != std::string::npos && p.shape.size() != 4 &&
          p.shape_known && !p.shape.empty())
        continue;  // a real bias vector, not GPT-2's causal mask buffer
      NonParameter np{p.name, r.kind, p.dtype, p.shape, p.shape_known};
      inv.non_params.push_back(std::move(np));
      drop[i] = true;
      if (r.quantization && found_method.empty()) found_method = r.quantization;
      // A weight stored packed beside its metadata: its logical shape comes from the family.
      const std::string method = r.quantization ? r.quantization : "";
      if (method.rfind("bitsandbytes", 0) == 0 || method == "mlx")
        packed_weights.insert(owner + ".weight");
      break;
    }
  }
  if (inv.non_params.empty()) return;
  FactsBuilder build(inv);
  size_t i = 0;
  build.remove_if([&](const Tensor&) { return drop[i++]; });
  // Quantized weights stored under another name, or in a packed shape: the logical parameter.
  std::vector<std::pair<std::string, std::string>> renames;
  for (auto& p : build.annotations()) {
    auto ends = [&](const std::string& s) {
      return p.name.size() > s.size() && p.name.compare(p.name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends(".qweight")) {
      renames.emplace_back(p.name, p.name.substr(0, p.name.size() - 8) + ".weight");
    } else if (ends("_blocks")) {
      renames.emplace_back(p.name, p.name.substr(0, p.name.size() - 7));
    } else if (packed_weights.count(p.name) == 0) {
      continue;
    }
    // Packed: the logical shape and dtype come from the config's family.
    p.shape_known = false;
    p.shape.clear();
    p.numel = 0;
    p.dtype.clear();
  }
  if (!renames.empty()) {
    std::map<std::string, std::string> to(renames.begin(), renames.end());
    std::vector<Tensor>& params = build.tensors();  // names change: indexed again by done()
    for (auto& p : params) {
      auto it = to.find(p.name);
      if (it != to.end() && !inv.contains(it->second)) p.name = it->second;
    }
    build.done();
  }
  if (inv.quantization.empty()) inv.quantization = found_method;
}

}  // namespace layerfreeze
