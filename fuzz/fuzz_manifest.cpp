// libFuzzer target: arbitrary bytes as a JSON manifest (what `inspect --format json` writes).
#include <cstdint>
#include <string>

#include "core/layer_discovery.hpp"
#include "layerfreeze/model_source.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  layerfreeze::Diagnostics diags;
  auto inv = layerfreeze::parse_manifest(text, "fuzz.json", diags);
  if (inv) layerfreeze::discover_layers(*inv, layerfreeze::DiscoveryPatterns::shipped(), diags);
  (void)layerfreeze::format_diagnostics(diags);
  return 0;
}
