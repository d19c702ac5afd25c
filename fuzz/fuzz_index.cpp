// libFuzzer target: arbitrary bytes as a sharded checkpoint's model.safetensors.index.json, with
// one real shard beside it (so the shard-matching paths run too).
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/layer_discovery.hpp"
#include "layerfreeze/model_source.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    std::string d = "/tmp/layerfreeze-fuzz-index-" + std::to_string(getpid());
    std::filesystem::create_directories(d);
    std::string err;
    layerfreeze::write_safetensors(
        d + "/shard-1.safetensors",
        {{"model.layers.0.w", "F32", {2, 2}}, {"model.embed.weight", "F16", {4}}}, &err);
    return d;
  }();
  {
    std::ofstream out(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  layerfreeze::Diagnostics diags;
  auto inv = layerfreeze::load_safetensors_index(dir + "/model.safetensors.index.json", diags);
  if (inv) layerfreeze::discover_layers(*inv, layerfreeze::DiscoveryPatterns::shipped(), diags);
  return 0;
}
