// libFuzzer target: arbitrary bytes as a model's config.json (expanded through the shipped
// families), or — when they start with "family:" — as a family file expanded over a fixed
// config. Both end in layer discovery, as `layerfreeze plan --model config.json` does.
#include <cstdint>
#include <string>

#include "core/layer_discovery.hpp"
#include "sources/checkpoint.hpp"
#include "sources/family.hpp"
#include "sources/json_file.hpp"

using namespace layerfreeze;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Diagnostics diags;
  std::optional<Inventory> inv;
  if (text.rfind("family:", 0) == 0) {
    static const ModelConfig config = [] {
      Diagnostics d;
      auto j = parse_json_text(
          R"({"model_type": "x", "hidden_size": 8, "num_hidden_layers": 3, "vocab_size": 11,
                                   "intermediate_size": 16, "num_attention_heads": 2, "mlp_only_layers": [1],
                                   "vision_config": {"depth": 2}})",
          "config.json", "config", d);
      return *model_config_from_json(*j, "config.json", d);
    }();
    auto family = Family::parse(text, "family.yaml", diags);
    if (family) {
      auto m = family->expand(config, diags);
      if (m) inv = Inventory(std::move(m->inv));
    }
  } else {
    auto j = parse_json_text(text, "config.json", "config", diags);
    if (j)
      if (auto cfg = model_config_from_json(*j, "config.json", diags))
        if (auto facts = apply_config(std::nullopt, *cfg, diags))
          inv = Inventory(std::move(*facts));
  }
  if (inv) discover_layers(*inv, DiscoveryPatterns::shipped(), diags);
  return 0;
}
