// Safetensors headers: an 8-byte little-endian header length, then a JSON object mapping tensor
// names to dtype, shape and data offsets. Only the header is read; offsets are checked against
// the file size so a truncated or hostile file is an error, not a wrong plan.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/facts_builder.hpp"
#include "core/json_text.hpp"
#include "layerfreeze/model_source.hpp"
#include "sources/json_file.hpp"
#include "sources/non_parameters.hpp"
#include "sources/readers.hpp"
#include "sources/weight_map.hpp"

namespace layerfreeze {

namespace {

const std::map<std::string, std::string>& dtype_names() {
  static const std::map<std::string, std::string> m = {{"F64", "float64"},
                                                       {"F32", "float32"},
                                                       {"F16", "float16"},
                                                       {"BF16", "bfloat16"},
                                                       {"I64", "int64"},
                                                       {"I32", "int32"},
                                                       {"I16", "int16"},
                                                       {"I8", "int8"},
                                                       {"U8", "uint8"},
                                                       {"U16", "uint16"},
                                                       {"U32", "uint32"},
                                                       {"U64", "uint64"},
                                                       {"BOOL", "bool"},
                                                       {"F8_E4M3", "float8_e4m3fn"},
                                                       {"F8_E5M2", "float8_e5m2"},
                                                       {"C64", "complex64"}};
  return m;
}

}  // namespace

std::string dtype_of_safetensors_code(const std::string& code) {
  auto it = dtype_names().find(code);
  return it == dtype_names().end() ? "" : it->second;
}

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit is 100 MB

struct HeaderEntry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  int64_t numel = 1;
};

// The header's JSON text, after checking its length against the file; `data_size` is what
// follows it.
std::optional<std::string> header_text(const std::string& path, uint64_t& data_size,
                                       Diagnostics& diags,
                                       const std::vector<std::filesystem::path>* folders) {
  SourceLoc loc{path, 0, 0};
  // Resolved, confined and checked to be a regular file (core/file_access.hpp); read from there.
  FileRead how = model_file_read("safetensors file", 0);
  if (folders) how.folders = folders;
  auto resolved = check_file(path, path, how, diags);
  if (!resolved) return std::nullopt;
  std::error_code ec;
  uint64_t file_size = std::filesystem::file_size(*resolved, ec);
  if (ec) {
    diags.error("model-unreadable", "cannot read '" + path + "': " + ec.message(), loc);
    return std::nullopt;
  }
  std::ifstream in(*resolved, std::ios::binary);
  unsigned char len_bytes[8];
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(len_bytes), 8)) {
    diags.error("safetensors-truncated",
                "file too short for a safetensors header (" + std::to_string(file_size) + " bytes)",
                loc);
    return std::nullopt;
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderBytes || n > file_size - 8) {
    diags.error("safetensors-header-size",
                "header claims " + std::to_string(n) + " bytes, but the file has " +
                    std::to_string(file_size - 8) + " after the length (limit " +
                    std::to_string(kMaxHeaderBytes) + ")",
                loc);
    return std::nullopt;
  }
  std::string text(n, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(n))) {
    diags.error("safetensors-truncated", "cannot read the header", loc);
    return std::nullopt;
  }
  data_size = file_size - 8 - n;
  return text;
}

// One tensor's entry `t`, checked against the `data_size` bytes of data: "" when it is
// plausible (then `e` and its byte range are filled), else why not.
std::string check_entry(const nlohmann::json& t, uint64_t data_size, HeaderEntry& e,
                        std::pair<uint64_t, uint64_t>& range) {
  if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets"))
    return "needs dtype, shape and data_offsets";
  if (!t["dtype"].is_string() || !dtype_names().count(t["dtype"].get<std::string>()))
    return "unknown dtype " + json_text(t["dtype"]);
  e.dtype = dtype_names().at(t["dtype"].get<std::string>());
  if (!t["shape"].is_array()) return "shape is not a list";
  bool shape_ok = true;
  for (const auto& d : t["shape"]) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40)) {
      shape_ok = false;
      break;
    }
    int64_t v = static_cast<int64_t>(d.get<uint64_t>());
    e.shape.push_back(v);
    if (v != 0 && e.numel > (int64_t{1} << 52) / v) shape_ok = false;
    e.numel *= v;
  }
  if (!shape_ok)
    return "shape " + json_text(t["shape"]) + " is not a list of sizes of a plausible tensor";
  const auto& off = t["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    return "data_offsets must be two non-negative integers";
  uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
  uint64_t want = static_cast<uint64_t>(e.numel) * static_cast<uint64_t>(dtype_bytes(e.dtype));
  if (b > en || en > data_size)
    return "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] lie outside the " +
           std::to_string(data_size) + " data bytes of the file";
  if (en - b != want)
    return "data_offsets span " + std::to_string(en - b) + " bytes, but " + e.dtype + " " +
           json_text(t["shape"]) + " needs " + std::to_string(want);
  range = {b, en};
  return "";
}

// Reads and checks one header; errors name the file and the tensor.
std::optional<std::vector<HeaderEntry>> read_header(
    const std::string& path, Diagnostics& diags,
    const std::vector<std::filesystem::path>* folders = nullptr) {
  SourceLoc loc{path, 0, 0};
  uint64_t data_size = 0;
  auto text = header_text(path, data_size, diags, folders);
  if (!text) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    diags.error("safetensors-header-json", "the header is not a JSON object", loc);
    return std::nullopt;
  }
  std::vector<HeaderEntry> out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  bool ok = true;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    HeaderEntry e;
    e.name = it.key();
    std::pair<uint64_t, uint64_t> range;
    std::string why = check_entry(it.value(), data_size, e, range);
    if (!why.empty()) {
      diags.error("safetensors-tensor", "tensor '" + it.key() + "': " + why, loc);
      ok = false;
      continue;
    }
    ranges.push_back(range);
    out.push_back(std::move(e));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      diags.error("safetensors-overlap",
                  "two tensors overlap at data bytes " + std::to_string(ranges[i].first), loc);
      ok = false;
      break;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

Tensor to_param(HeaderEntry e) {
  Tensor p;
  p.name = std::move(e.name);
  p.dtype = std::move(e.dtype);
  p.shape = std::move(e.shape);
  p.numel = e.numel;
  return p;
}

}  // namespace

std::optional<ModelFacts> read_safetensors(const std::string& path, Diagnostics& diags) {
  auto entries = read_header(path, diags);
  if (!entries) return std::nullopt;
  ModelFacts inv;
  inv.source = path;
  {
    FactsBuilder build(inv);
    for (auto& e : *entries) build.add(to_param(std::move(e)));
  }
  separate_non_parameters(inv);
  FactsBuilder(inv).sort_natural();
  return inv;
}

// An index of a million names is ~80 MB; the largest published (22k names) is 2 MB.
constexpr uint64_t kMaxIndexBytes = uint64_t{128} << 20;

std::optional<ModelFacts> read_safetensors_index(const std::string& path, Diagnostics& diags) {
  auto text = read_text_file(path, "the safetensors index", diags, kMaxIndexBytes);
  if (!text) return std::nullopt;
  auto map = read_weight_map(*text);
  if (!map) map = read_weight_map_checked(*text, path, diags);
  if (!map) return std::nullopt;
  if (map->too_many > 0) {
    diags.error("model-too-large",
                "the safetensors index '" + path + "' names " + std::to_string(map->too_many) +
                    " tensors; the limit is " + std::to_string(kMaxModelTensors),
                {path, 0, 0});
    return std::nullopt;
  }
  // Shards in name order, so that the first error found is the same from run to run.
  std::vector<uint32_t> shard_order(map->shards.size());
  for (uint32_t s = 0; s < shard_order.size(); ++s) shard_order[s] = s;
  std::sort(shard_order.begin(), shard_order.end(),
            [&](uint32_t a, uint32_t b) { return map->shards[a] < map->shards[b]; });
  std::vector<std::vector<uint32_t>> by_shard(map->shards.size());  // entries of each shard
  for (uint32_t e = 0; e < map->entries.size(); ++e) by_shard[map->entries[e].second].push_back(e);
  SourceLoc loc{path, 0, 0};
  auto dir = std::filesystem::path(path).parent_path();
  // Shards lie beside the index: a symlink among them that leads elsewhere is refused.
  const auto shard_folders = allowed_folders(path);
  ModelFacts inv;
  inv.source = path;
  if (map->total_size)
    inv.stored_bytes = static_cast<int64_t>(std::min<uint64_t>(*map->total_size, INT64_MAX));
  size_t missing = 0;
  std::vector<Tensor> params;  // added in one pass (ModelFacts::append)
  params.reserve(map->entries.size());
  for (uint32_t s : shard_order) {
    const std::string& shard = map->shards[s];
    if (shard.find("..") != std::string::npos || std::filesystem::path(shard).is_absolute()) {
      diags.error("index-format", "shard name '" + shard + "' leaves the index's folder", loc);
      return std::nullopt;
    }
    auto shard_path = dir / shard;
    std::map<std::string, HeaderEntry> found;
    if (std::filesystem::exists(shard_path)) {
      auto entries = read_header(shard_path.string(), diags, &shard_folders);
      if (!entries) return std::nullopt;
      for (auto& e : *entries) found.emplace(e.name, e);
    } else {
      ++missing;
    }
    const std::string* unlisted = nullptr;  // the first in name order, for the error
    for (uint32_t e : by_shard[s]) {
      std::string& n = map->entries[e].first;
      auto f = found.find(n);
      if (f != found.end()) {
        params.push_back(to_param(f->second));
      } else if (missing == 0) {
        if (!unlisted || n < *unlisted) unlisted = &n;
      } else {
        Tensor p;
        p.name = std::move(n);
        p.shape_known = false;
        p.numel = 0;
        params.push_back(std::move(p));
      }
    }
    if (unlisted) {
      diags.error("index-shard-mismatch",
                  "'" + *unlisted + "' is mapped to '" + shard + "', whose header does not list it",
                  loc);
      return std::nullopt;
    }
  }
  FactsBuilder(inv).append(std::move(params));
  if (missing > 0) {
    inv.source_notes.push_back(std::to_string(missing) + " of " + std::to_string(by_shard.size()) +
                               " shards are not beside the index: shapes unknown, counts are of "
                               "tensors, not parameters");
  }
  separate_non_parameters(inv);
  FactsBuilder(inv).sort_natural();
  return inv;
}

bool write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                       std::string* error) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    auto it = dtype_names().find(t.dtype);
    if (it == dtype_names().end()) {
      if (error) *error = "unknown dtype " + t.dtype;
      return false;
    }
    uint64_t n = static_cast<uint64_t>(dtype_bytes(it->second));
    for (auto d : t.shape) n *= static_cast<uint64_t>(d);
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = json_text(header);
  while (text.size() % 8) text.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    if (error) *error = "cannot write " + path;
    return false;
  }
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << text;
  // Sparse zeros for the data: seek to the end and write one byte.
  if (offset > 0) {
    out.seekp(static_cast<std::streamoff>(8 + n + offset - 1));
    out.put('\0');
  }
  return static_cast<bool>(out);
}

}  // namespace layerfreeze
