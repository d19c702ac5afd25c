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

namespace {
// One decimal in the largest unit the value reaches: 1.2B, 354.3M; 6.7 GB, 475.0 MB.
std::string scaled(int64_t n, const char* const units[3], const char* sep, const char* plain) {
  char buf[32];
  const double limits[3] = {1e9, 1e6, 1e3};
  for (int k = 0; k < 3; ++k)
    if (static_cast<double>(n) >= limits[k]) {
      std::snprintf(buf, sizeof buf, "%.1f%s%s", static_cast<double>(n) / limits[k], sep, units[k]);
      return buf;
    }
  std::snprintf(buf, sizeof buf, "%lld%s", static_cast<long long>(n), plain);
  return buf;
}
}  // namespace

std::string short_count(int64_t n) {
  static const char* const units[3] = {"B", "M", "K"};
  return scaled(n, units, "", "");
}

std::string bytes_text(int64_t b) {
  static const char* const units[3] = {"GB", "MB", "KB"};
  return scaled(b, units, " ", " B");
}

std::string percent(int64_t part, int64_t whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%",
                whole > 0 ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
  return buf;
}

}  // namespace layerfreeze
