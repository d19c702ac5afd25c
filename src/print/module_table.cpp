#include "print/module_table.hpp"

#include <fmt/format.h>

#include <map>

#include "core/format.hpp"

namespace layerfreeze {

namespace {

// Code points: the columns a name takes in a terminal (box drawing and ✓ are one each).
size_t columns(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The first `n` code points of `s`.
std::string first_columns(const std::string& s, size_t n) {
  size_t i = 0;
  for (size_t seen = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
    if (seen++ == n) break;
  }
  return s.substr(0, i);
}

std::string pad(const std::string& s, size_t w, bool right = false) {
  std::string fill(columns(s) < w ? w - columns(s) : 0, ' ');
  return right ? fill + s : s + fill;
}

}  // namespace

ModuleTable module_table(const Inventory& inv, const std::vector<bool>& frozen, int max_depth) {
  ModuleTable t;
  t.model_type = inv.facts().model_type;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < inv.params().size(); ++i) {
    const Param& p = inv.params()[i];
    std::string path = p.module_path().empty() ? p.name : p.module_path();
    std::string key;
    for (int d = 0, start = 0; d < max_depth; ++d) {
      size_t dot = path.find('.', static_cast<size_t>(start));
      key = path.substr(0, dot);
      if (dot == std::string::npos) break;
      start = static_cast<int>(dot) + 1;
    }
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, t.rows.size()).first;
      t.rows.push_back({key});
    }
    const int64_t f = frozen[i] ? p.numel : 0;
    t.rows[it->second].numel += p.numel;
    t.rows[it->second].frozen += f;
    t.total += p.numel;
    t.frozen += f;
  }
  return t;
}

std::string module_table_text(const ModuleTable& t) {
  constexpr size_t kInner = 69;  // columns between the two vertical bars
  std::string bar;
  for (size_t i = 0; i < kInner; ++i) bar += "═";
  auto line = [&](const std::string& text) { return "║  " + pad(text, kInner - 2) + "║\n"; };
  const int64_t trainable = t.total - t.frozen;
  std::string o = "╔" + bar + "╗\n" + line("MODEL SUMMARY") + "╠" + bar + "╣\n";
  o += line("Model: " + t.model_type);
  o += line("Total Parameters: " + with_commas(t.total));
  o += line(fmt::format("Trainable: {} ({})", with_commas(trainable), percent(trainable, t.total)));
  o += line(fmt::format("Frozen: {} ({})", with_commas(t.frozen), percent(t.frozen, t.total)));
  o += line(fmt::format("Memory: ~{:.1f} MB", static_cast<double>(t.bytes) / (1024.0 * 1024.0)));
  o += "╠" + bar + "╣\n";
  o += line(pad("Layer", 37) + "│ " + pad("Parameters", 12, true) + " │ Status");
  o += "╠" + bar + "╣\n";
  for (const auto& r : t.rows) {
    const char* status = r.frozen == 0 ? "✓" : r.frozen == r.numel ? "✗" : "partial";
    std::string name = columns(r.name) > 37 ? first_columns(r.name, 34) + "..." : r.name;
    o += line(pad(name, 37) + "│ " + pad(with_commas(r.numel), 12, true) + " │ " + status);
  }
  o += "╚" + bar + "╝\n";
  return o;
}

}  // namespace layerfreeze
