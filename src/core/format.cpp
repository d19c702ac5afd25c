#include "core/format.hpp"

#include <fmt/format.h>

#include <locale>

namespace layerfreeze {

namespace {

// Digits grouped by three with ',' whatever the user's locale, so output is the same
// everywhere (a golden file, a CI log, a reviewer's terminal).
struct CommaGroups : std::numpunct<char> {
  char do_thousands_sep() const override { return ','; }
  std::string do_grouping() const override { return "\3"; }
};

const std::locale& comma_locale() {
  static const std::locale loc(std::locale::classic(), new CommaGroups);
  return loc;
}

// One decimal in the largest unit the value reaches: 1.2B, 354.3M; 6.7 GB, 475.0 MB.
std::string scaled(int64_t n, const char* const units[3], const char* sep, const char* plain) {
  const double limits[3] = {1e9, 1e6, 1e3};
  for (int k = 0; k < 3; ++k)
    if (static_cast<double>(n) >= limits[k])
      return fmt::format("{:.1f}{}{}", static_cast<double>(n) / limits[k], sep, units[k]);
  return fmt::format("{}{}", n, plain);
}

}  // namespace

std::string with_commas(int64_t n) { return fmt::format(comma_locale(), "{:L}", n); }

std::string short_count(int64_t n) {
  static const char* const units[3] = {"B", "M", "K"};
  return scaled(n, units, "", "");
}

std::string bytes_text(int64_t b) {
  static const char* const units[3] = {"GB", "MB", "KB"};
  return scaled(b, units, " ", " B");
}

std::string percent(int64_t part, int64_t whole) {
  return fmt::format(
      "{:.1f}%", whole > 0 ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& x : items) out += (out.empty() ? "" : separator) + x;
  return out;
}

}  // namespace layerfreeze
