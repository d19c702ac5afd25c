// The fast path for a safetensors index (`model.safetensors.index.json`): its weight map read
// with simdjson instead of building nlohmann's tree of std::map nodes, ~4x faster on a 2 MB
// index (docs/PERFORMANCE.md). It accepts only what the full reader accepts; anything else
// (invalid JSON, a wrong shape) returns nothing, and the caller reads the text again with
// nlohmann-json for the diagnostic with line and column.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

struct WeightMap {
  std::vector<std::string> shards;  // the files named, each once, in order of first mention
  /// Tensor name → index into `shards`, in file order; a repeated name keeps its last file (as
  /// a JSON object read into a map does).
  std::vector<std::pair<std::string, uint32_t>> entries;
  /// metadata.total_size when it is an unsigned integer.
  std::optional<uint64_t> total_size;
  /// How many names the weight map has when that is more than kMaxModelTensors (then `entries`
  /// is empty: the index is refused, not read); 0 otherwise.
  size_t too_many = 0;
};

/// The most tensors a model source may list (an index, a manifest, a family's expansion): ten
/// times the largest model known (~100k tensors). A small file cannot become gigabytes of names.
inline constexpr size_t kMaxModelTensors = 1000000;

/// The weight map of an index whose text is valid JSON of the expected shape: an object with a
/// `weight_map` object of strings. Nothing otherwise.
std::optional<WeightMap> read_weight_map(const std::string& text);

/// The same read by nlohmann-json, whose errors carry line and column (`json-syntax`,
/// `json-trailing-text`, `index-format`): for a text read_weight_map refused.
std::optional<WeightMap> read_weight_map_checked(const std::string& text, const std::string& path,
                                                 Diagnostics& diags);

}  // namespace layerfreeze
