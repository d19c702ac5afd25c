#include "layerfreeze/model_facts.hpp"

#include <algorithm>
#include <cctype>
#include <functional>

#include "core/hash.hpp"

namespace layerfreeze {

int dtype_bytes(const std::string& dtype) {
  // Called for every parameter of every printed stage: a table scan, no hashing.
  struct Size {
    const char* name;
    int bytes;
  };
  static constexpr Size kSizes[] = {
      {"float32", 4}, {"bfloat16", 2},    {"float16", 2},   {"float8_e4m3fn", 1}, {"float64", 8},
      {"int64", 8},   {"int32", 4},       {"int16", 2},     {"int8", 1},          {"uint8", 1},
      {"bool", 1},    {"float8_e5m2", 1}, {"complex64", 8}, {"complex128", 16},   {"uint16", 2},
      {"uint32", 4},  {"uint64", 8}};
  for (const Size& s : kSizes)
    if (dtype == s.name) return s.bytes;
  return 0;
}

std::string Tensor::module_path() const {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? "" : name.substr(0, dot);
}

std::string Tensor::leaf() const {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

uint32_t ModelFacts::add(Tensor p) {
  uint32_t i = static_cast<uint32_t>(tensors_.size());
  tensors_.push_back(std::move(p));
  const uint32_t n = static_cast<uint32_t>(tensors_[i].aliases.size());
  for (uint32_t k = 0; k <= n; ++k) index_.insert(tensors_, i, k);
  return i;
}

void ModelFacts::append(std::vector<Tensor> more) {
  const uint32_t first = static_cast<uint32_t>(tensors_.size());
  if (tensors_.empty()) {
    tensors_ = std::move(more);
  } else {
    tensors_.reserve(tensors_.size() + more.size());
    for (auto& p : more) tensors_.push_back(std::move(p));
  }
  index_.insert_from(tensors_, first);
}

bool ModelFacts::add_alias(const std::string& canonical, const std::string& alias) {
  auto i = find(canonical);
  if (!i || find(alias)) return false;
  tensors_[*i].aliases.push_back(alias);
  index_.insert(tensors_, *i, static_cast<uint32_t>(tensors_[*i].aliases.size()));
  return true;
}

bool ModelFacts::tie(const std::string& canonical, const std::string& alias) {
  auto c = find(canonical);
  if (!c) return false;
  auto a = find(alias);
  if (a && *a == *c) return true;
  if (!a) return add_alias(canonical, alias);
  // A tensor stored under the alias too (a checkpoint that saved both names): one tensor.
  Tensor merged = std::move(tensors_[*a]);
  std::string keep = tensors_[*c].name;
  tensors_.erase(tensors_.begin() + *a);
  reindex();
  Tensor& p = tensors_[*find(keep)];
  p.aliases.push_back(merged.name);
  for (auto& x : merged.aliases) p.aliases.push_back(std::move(x));
  reindex();
  return true;
}

std::optional<uint32_t> ModelFacts::find(std::string_view name) const {
  return index_.find(tensors_, name);
}

bool ModelFacts::shapes_known() const {
  return std::all_of(tensors_.begin(), tensors_.end(),
                     [](const Tensor& p) { return p.shape_known; });
}

int64_t ModelFacts::total_numel() const {
  int64_t n = 0;
  for (const auto& p : tensors_) n += p.numel;
  return n;
}

int64_t ModelFacts::total_bytes() const {
  int64_t n = 0;
  for (const auto& p : tensors_) n += p.bytes();
  return n;
}

size_t ModelFacts::num_names() const {
  size_t n = 0;
  for (const auto& p : tensors_) n += 1 + p.aliases.size();
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

namespace {

void append_natural_key(std::string& key, const std::string& name) {
  // A digit run becomes: a length byte, the digits without leading zeros, the count of those
  // zeros. The length byte stays within '1'..'9' (a longer run: '9' and four bytes of length),
  // so against a non-digit it sorts as any digit does; two runs compare by length, then
  // digits, then fewer zeros first — natural_less's order, read by one memcmp.
  for (size_t i = 0; i < name.size();) {
    size_t plain = i;
    while (plain < name.size() && !std::isdigit(static_cast<unsigned char>(name[plain]))) ++plain;
    key.append(name, i, plain - i);
    i = plain;
    if (i == name.size()) break;
    size_t end = i;
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
    size_t start = i;
    while (start + 1 < end && name[start] == '0') ++start;
    const size_t digits = end - start, zeros = start - i;
    if (digits < 9) {
      key += static_cast<char>('0' + digits);
    } else {
      key += '9';
      for (int shift = 24; shift >= 0; shift -= 8)
        key += static_cast<char>((digits >> shift) & 0xff);
    }
    key.append(name, start, digits);
    for (int shift = 24; shift >= 0; shift -= 8) key += static_cast<char>((zeros >> shift) & 0xff);
    i = end;
  }
}

}  // namespace

std::string natural_key(const std::string& name) {
  std::string key;
  append_natural_key(key, name);
  return key;
}

void ModelFacts::sort_natural() {
  // Each name's key once, then positions sorted by plain byte comparison of the keys; each
  // parameter is moved once (a Tensor is large to move around).
  // The keys live in one buffer.
  std::string buffer;
  std::vector<size_t> ends(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    append_natural_key(buffer, tensors_[i].name);
    ends[i] = buffer.size();
  }
  auto key = [&](uint32_t i) {
    const size_t begin = i == 0 ? 0 : ends[i - 1];
    return std::string_view(buffer).substr(begin, ends[i] - begin);
  };
  std::vector<uint32_t> order(tensors_.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t x, uint32_t y) { return key(x) < key(y); });
  std::vector<Tensor> sorted;
  sorted.reserve(tensors_.size());
  for (uint32_t i : order) sorted.push_back(std::move(tensors_[i]));
  tensors_ = std::move(sorted);
  registration_order = false;
  reindex();
}

void ModelFacts::reindex() {
  index_.clear();
  index_.insert_from(tensors_, 0);
}

namespace {

uint32_t name_hash(std::string_view s) {
  uint64_t h = std::hash<std::string_view>{}(s);
  return static_cast<uint32_t>(h ^ (h >> 32));
}

const std::string* name_of(const std::vector<Tensor>& params, uint32_t param, uint32_t which) {
  if (param >= params.size()) return nullptr;
  const Tensor& p = params[param];
  if (which == 0) return &p.name;
  return which <= p.aliases.size() ? &p.aliases[which - 1] : nullptr;
}

}  // namespace

void ModelFacts::NameIndex::reserve(size_t names) {
  size_t want = 16;
  while (want < 2 * names) want *= 2;
  if (want > slots_.size()) grow(want);
}

void ModelFacts::NameIndex::clear() {
  slots_.clear();
  size_ = 0;
}

void ModelFacts::NameIndex::grow(size_t slots) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(slots, Slot{});
  const size_t mask = slots - 1;
  for (const Slot& s : old) {
    if (s.param == kEmpty) continue;
    size_t at = s.hash & mask;
    while (slots_[at].param != kEmpty) at = (at + 1) & mask;
    slots_[at] = s;
  }
}

bool ModelFacts::NameIndex::insert(const std::vector<Tensor>& params, uint32_t param,
                                   uint32_t which) {
  const std::string& name = *name_of(params, param, which);
  return insert_hashed(params, Slot{name_hash(name), param, which}, name);
}

bool ModelFacts::NameIndex::insert_hashed(const std::vector<Tensor>& params, Slot slot,
                                          std::string_view name) {
  if (2 * (size_ + 1) > slots_.size()) grow(slots_.empty() ? 16 : 2 * slots_.size());
  const size_t mask = slots_.size() - 1;
  size_t at = slot.hash & mask;
  for (; slots_[at].param != kEmpty; at = (at + 1) & mask) {
    const Slot& s = slots_[at];
    if (s.hash != slot.hash) continue;
    const std::string* other = name_of(params, s.param, s.which);
    if (other && *other == name) return false;  // the first of a repeated name stays
  }
  slots_[at] = slot;
  ++size_;
  return true;
}

void ModelFacts::NameIndex::insert_from(const std::vector<Tensor>& params, uint32_t first) {
  // Hash every name first (a sequential walk), then insert while the slot a few names ahead is
  // being fetched: a table of 100k names does not fit in cache, and one miss after another
  // cost ~100 ns a name here (docs/PERFORMANCE.md).
  std::vector<Slot> pending;
  for (uint32_t i = first; i < params.size(); ++i) {
    const Tensor& p = params[i];
    pending.push_back(Slot{name_hash(p.name), i, 0});
    for (uint32_t k = 1; k <= p.aliases.size(); ++k)
      pending.push_back(Slot{name_hash(p.aliases[k - 1]), i, k});
  }
  reserve(size_ + pending.size());
  constexpr size_t kAhead = 8;
  const size_t mask = slots_.size() - 1;
  for (size_t j = 0; j < pending.size(); ++j) {
#if defined(__GNUC__)
    if (j + kAhead < pending.size()) __builtin_prefetch(&slots_[pending[j + kAhead].hash & mask]);
#endif
    const Slot& s = pending[j];
    insert_hashed(params, s, *name_of(params, s.param, s.which));
  }
}

std::optional<uint32_t> ModelFacts::NameIndex::find(const std::vector<Tensor>& params,
                                                    std::string_view name) const {
  if (slots_.empty()) return std::nullopt;
  const uint32_t h = name_hash(name);
  const size_t mask = slots_.size() - 1;
  for (size_t at = h & mask; slots_[at].param != kEmpty; at = (at + 1) & mask) {
    const Slot& s = slots_[at];
    if (s.hash != h) continue;
    const std::string* stored = name_of(params, s.param, s.which);
    if (stored && *stored == name) return s.param;
  }
  return std::nullopt;
}

std::string ModelFacts::fingerprint() const {
  Hasher h;
  for (const auto& p : tensors_) {
    h.add(p.name);
    for (const auto& a : p.aliases) h.add(a);
    h.add(p.shape_known ? 1 : 0);
    for (auto d : p.shape) h.add(d);
    h.add(p.dtype);
  }
  return h.hex();
}

}  // namespace layerfreeze
