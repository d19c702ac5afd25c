// libFuzzer target: arbitrary bytes as a .safetensors file → header reader (lengths, JSON,
// dtypes, shapes, offsets against the file size, overlaps), then layer discovery.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "core/layer_discovery.hpp"
#include "layerfreeze/model_source.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      "/tmp/layerfreeze-fuzz-" + std::to_string(getpid()) + ".safetensors";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  layerfreeze::Diagnostics diags;
  auto inv = layerfreeze::load_safetensors(path, diags);
  if (inv) layerfreeze::discover_layers(*inv, layerfreeze::DiscoveryPatterns::shipped(), diags);
  return 0;
}
