#include "sources/weight_map.hpp"

#include "sources/json_file.hpp"

#include <simdjson.h>

#include <map>

#include <string_view>
#include <unordered_map>

namespace layerfreeze {

std::optional<WeightMap> read_weight_map(const std::string& text) {
  // The DOM parser validates the whole document (UTF-8, literals, numbers, nothing after the
  // value), so what it accepts nlohmann-json accepts too.
  simdjson::dom::parser parser;
  simdjson::padded_string padded(text);
  simdjson::dom::element root;
  if (parser.parse(padded).get(root)) return std::nullopt;
  simdjson::dom::object top;
  if (root.get_object().get(top)) return std::nullopt;

  WeightMap out;
  bool found = false;
  for (auto field : top) {
    if (field.key == "metadata") {
      out.total_size.reset();  // a repeated key keeps its last value
      simdjson::dom::object meta;
      if (field.value.get_object().get(meta)) continue;
      for (auto m : meta) {
        if (m.key != "total_size") continue;
        uint64_t n = 0;
        // A repeated key keeps its last value; a negative or fractional one is no size.
        if (m.value.is_uint64() && !m.value.get_uint64().get(n))
          out.total_size = n;
        else
          out.total_size.reset();
      }
    } else if (field.key == "weight_map") {
      simdjson::dom::object map;
      if (field.value.get_object().get(map)) return std::nullopt;
      found = true;
      out.entries.clear();
      if (map.size() > kMaxModelTensors) {
        out.too_many = map.size();
        continue;
      }
      out.entries.reserve(map.size());
      std::unordered_map<std::string_view, size_t> seen(2 * map.size());
      std::unordered_map<std::string_view, uint32_t> shard_index;
      for (auto entry : map) {
        std::string_view shard;
        if (entry.value.get_string().get(shard)) return std::nullopt;
        auto [s, new_shard] = shard_index.emplace(shard, static_cast<uint32_t>(out.shards.size()));
        if (new_shard) out.shards.emplace_back(shard);
        auto [at, fresh] = seen.emplace(entry.key, out.entries.size());
        if (fresh)
          out.entries.emplace_back(std::string(entry.key), s->second);
        else
          out.entries[at->second].second = s->second;
      }
    }
  }
  if (!found) return std::nullopt;
  return out;
}

std::optional<WeightMap> read_weight_map_checked(const std::string& text, const std::string& path,
                                                 Diagnostics& diags) {
  SourceLoc loc{path, 0, 0};
  auto parsed = parse_json_text(text, path, "the safetensors index", diags);
  if (!parsed) return std::nullopt;
  const nlohmann::json& j = *parsed;
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    diags.error("index-format",
                "not a safetensors index: expected a JSON object with a 'weight_map' object", loc);
    return std::nullopt;
  }
  WeightMap map;
  if (j["weight_map"].size() > kMaxModelTensors) {
    map.too_many = j["weight_map"].size();
    return map;
  }
  std::map<std::string, uint32_t> shard_index;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) {
      diags.error("index-format", "weight_map['" + it.key() + "'] is not a file name", loc);
      return std::nullopt;
    }
    const std::string& shard = it.value().get_ref<const std::string&>();
    auto [s, fresh] = shard_index.emplace(shard, static_cast<uint32_t>(map.shards.size()));
    if (fresh) map.shards.push_back(shard);
    map.entries.emplace_back(it.key(), s->second);  // keys of a JSON object are unique here
  }
  if (j.contains("metadata") && j["metadata"].is_object() && j["metadata"].contains("total_size") &&
      j["metadata"]["total_size"].is_number_unsigned())
    map.total_size = j["metadata"]["total_size"].get<uint64_t>();
  return map;
}

}  // namespace layerfreeze
