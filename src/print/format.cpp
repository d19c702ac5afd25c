#include "print/format.hpp"

#include <cstdio>

namespace layerfreeze {

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  int k = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (k && k % 3 == 0) out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++k;
  }
  return n < 0 ? "-" + out : out;
}

std::string short_count(int64_t n) {
  char buf[32];
  double v = static_cast<double>(n);
  if (n >= 1000000000) std::snprintf(buf, sizeof buf, "%.1fB", v / 1e9);
  else if (n >= 1000000) std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  else if (n >= 1000) std::snprintf(buf, sizeof buf, "%.1fK", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

std::string bytes_text(int64_t b) {
  char buf[32];
  double v = static_cast<double>(b);
  if (b >= 1000000000) std::snprintf(buf, sizeof buf, "%.1f GB", v / 1e9);
  else if (b >= 1000000) std::snprintf(buf, sizeof buf, "%.1f MB", v / 1e6);
  else if (b >= 1000) std::snprintf(buf, sizeof buf, "%.1f KB", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(b));
  return buf;
}

std::string percent(int64_t part, int64_t whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", whole > 0 ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
  return buf;
}

}  // namespace layerfreeze
