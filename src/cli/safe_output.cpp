#include "cli/safe_output.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace layerfreeze::cli {

namespace {

bool is_control(unsigned char c) { return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f; }

// Whether any of 8 bytes is below 0x20 or is 0x7f (newlines and tabs included: the caller looks
// closer then). Eight bytes a step: what the CLI prints can be tens of MB of JSON.
bool any_low_or_del(uint64_t x) {
  constexpr uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  const uint64_t low = (x - ones * 0x20) & ~x & highs;  // a byte < 0x20
  const uint64_t d = x ^ (ones * 0x7f);
  const uint64_t del = (d - ones) & ~d & highs;  // a byte == 0x7f
  return (low | del) != 0;
}

// The length of the run at `s` with no control character (newline and tab allowed).
std::streamsize plain_run(const char* s, std::streamsize n) {
  std::streamsize i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t x;
      std::memcpy(&x, s + i, 8);
      if (!any_low_or_del(x)) {
        i += 8;
        continue;
      }
    }
    // A block with a newline, a tab or a control character: byte by byte.
    for (const std::streamsize end = std::min<std::streamsize>(n, i + 8); i < end; ++i)
      if (is_control(static_cast<unsigned char>(s[i]))) return i;
  }
  return n;
}

}  // namespace

SafeOutput::SafeOutput(std::ostream& stream) : stream_(stream), inner_(stream.rdbuf(this)) {}

SafeOutput::~SafeOutput() { stream_.rdbuf(inner_); }

std::streamsize SafeOutput::xsputn(const char* s, std::streamsize n) {
  std::streamsize i = 0;
  while (i < n) {
    // A run without control characters goes out in one call.
    const std::streamsize run = i + plain_run(s + i, n - i);
    if (run > i && inner_->sputn(s + i, run - i) != run - i) return i;
    i = run;
    if (i < n) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned char>(s[i]));
      if (inner_->sputn(esc, 4) != 4) return i;
      ++i;
    }
  }
  return n;
}

SafeOutput::int_type SafeOutput::overflow(int_type c) {
  if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
  const char ch = traits_type::to_char_type(c);
  return xsputn(&ch, 1) == 1 ? c : traits_type::eof();
}

int SafeOutput::sync() { return inner_->pubsync(); }

}  // namespace layerfreeze::cli
