// libFuzzer target: arbitrary bytes as a sharded checkpoint's model.safetensors.index.json, with
// one real shard beside it (so the shard-matching paths run too). The fast weight-map reader
// (simdjson) must never accept a text the full one (nlohmann-json) refuses or reads otherwise.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "core/layer_discovery.hpp"
#include "layerfreeze/model_source.hpp"
#include "sources/weight_map.hpp"

namespace {

std::map<std::string, std::string> by_name(const layerfreeze::WeightMap& m) {
  std::map<std::string, std::string> out;
  for (const auto& [name, shard] : m.entries) out[name] = m.shards.at(shard);
  return out;
}

void check_readers_agree(const std::string& text) {
  auto fast = layerfreeze::read_weight_map(text);
  if (!fast) return;
  layerfreeze::Diagnostics d;
  auto full = layerfreeze::read_weight_map_checked(text, "index.json", d);
  if (!full || by_name(*fast) != by_name(*full) || fast->total_size != full->total_size)
    std::abort();
}

}  // namespace

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
  check_readers_agree(std::string(reinterpret_cast<const char*>(data), size));
  layerfreeze::Diagnostics diags;
  auto inv = layerfreeze::load_safetensors_index(dir + "/model.safetensors.index.json", diags);
  if (inv) layerfreeze::discover_layers(*inv, layerfreeze::DiscoveryPatterns::shipped(), diags);
  return 0;
}
