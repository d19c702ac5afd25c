#include "layerfreeze/inventory.hpp"

#include <algorithm>
#include <cctype>

#include "core/hash.hpp"

namespace layerfreeze {

const char* role_name(Role r) {
  switch (r) {
    case Role::kEmbeddings: return "embeddings";
    case Role::kLayer: return "layer";
    case Role::kHead: return "head";
    case Role::kOther: return "other";
    case Role::kTower: return "tower";
    case Role::kConnector: return "connector";
  }
  return "other";
}

std::optional<Role> parse_role(const std::string& s) {
  if (s == "embeddings") return Role::kEmbeddings;
  if (s == "layer" || s == "layers") return Role::kLayer;
  if (s == "head") return Role::kHead;
  if (s == "other") return Role::kOther;
  if (s == "tower" || s == "towers") return Role::kTower;
  if (s == "connector" || s == "connectors") return Role::kConnector;
  return std::nullopt;
}

int dtype_bytes(const std::string& dtype) {
  static const std::unordered_map<std::string, int> sizes = {
      {"float64", 8},       {"float32", 4},     {"float16", 2},   {"bfloat16", 2},    {"int64", 8},
      {"int32", 4},         {"int16", 2},       {"int8", 1},      {"uint8", 1},       {"bool", 1},
      {"float8_e4m3fn", 1}, {"float8_e5m2", 1}, {"complex64", 8}, {"complex128", 16}, {"uint16", 2},
      {"uint32", 4},        {"uint64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::string Param::module_path() const {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? "" : name.substr(0, dot);
}

std::string Param::leaf() const {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

uint32_t Inventory::add(Param p) {
  uint32_t i = static_cast<uint32_t>(params.size());
  index_.emplace(p.name, i);
  for (const auto& a : p.aliases) index_.emplace(a, i);
  params.push_back(std::move(p));
  return i;
}

bool Inventory::add_alias(const std::string& canonical, const std::string& alias) {
  auto i = find(canonical);
  if (!i || find(alias)) return false;
  params[*i].aliases.push_back(alias);
  index_.emplace(alias, *i);
  return true;
}

bool Inventory::tie(const std::string& canonical, const std::string& alias) {
  auto c = find(canonical);
  if (!c) return false;
  auto a = find(alias);
  if (a && *a == *c) return true;
  if (!a) return add_alias(canonical, alias);
  // A tensor stored under the alias too (a checkpoint that saved both names): one tensor.
  Param merged = std::move(params[*a]);
  std::string keep = params[*c].name;
  params.erase(params.begin() + *a);
  reindex();
  Param& p = params[*find(keep)];
  p.aliases.push_back(merged.name);
  for (auto& x : merged.aliases) p.aliases.push_back(std::move(x));
  reindex();
  return true;
}

std::optional<uint32_t> Inventory::find(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

bool Inventory::shapes_known() const {
  return std::all_of(params.begin(), params.end(), [](const Param& p) { return p.shape_known; });
}

int64_t Inventory::total_numel() const {
  int64_t n = 0;
  for (const auto& p : params) n += p.numel;
  return n;
}

int64_t Inventory::total_bytes() const {
  int64_t n = 0;
  for (const auto& p : params) n += p.bytes();
  return n;
}

size_t Inventory::num_names() const {
  size_t n = 0;
  for (const auto& p : params) n += 1 + p.aliases.size();
  return n;
}

bool natural_less(const std::string& a, const std::string& b) {
  // Names share long prefixes (`model.layers.12.mlp.experts.`): skip the common prefix, backed
  // up to the start of a digit run it ends in, since a number compares as a whole.
  const size_t n = std::min(a.size(), b.size());
  size_t k = 0;
  while (k < n && a[k] == b[k]) ++k;
  while (k > 0 && std::isdigit(static_cast<unsigned char>(a[k - 1]))) --k;
  size_t i = k, j = k;
  while (i < a.size() && j < b.size()) {
    bool da = std::isdigit(static_cast<unsigned char>(a[i]));
    bool db = std::isdigit(static_cast<unsigned char>(b[j]));
    if (da && db) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      // Compare digit runs as numbers without overflow: strip leading zeros, then length.
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      int c = a.compare(is, ie - is, b, js, je - js);
      if (c != 0) return c < 0;
      if (ie - i != je - j) return ie - i < je - j;  // fewer leading zeros first
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

void Inventory::sort_natural() {
  // Sort positions, then move each parameter once (a Param is large to move around).
  std::vector<uint32_t> order(params.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
    return natural_less(params[x].name, params[y].name);
  });
  std::vector<Param> sorted;
  sorted.reserve(params.size());
  for (uint32_t i : order) sorted.push_back(std::move(params[i]));
  params = std::move(sorted);
  registration_order = false;
  reindex();
}

void Inventory::reindex() {
  index_.clear();
  for (uint32_t i = 0; i < params.size(); ++i) {
    index_.emplace(params[i].name, i);
    for (const auto& a : params[i].aliases) index_.emplace(a, i);
  }
}

std::string Inventory::fingerprint() const {
  Hasher h;
  for (const auto& p : params) {
    h.add(p.name);
    for (const auto& a : p.aliases) h.add(a);
    h.add(p.shape_known ? 1 : 0);
    for (auto d : p.shape) h.add(d);
    h.add(p.dtype);
  }
  return h.hex();
}

}  // namespace layerfreeze
