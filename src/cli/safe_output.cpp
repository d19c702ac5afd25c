#include "cli/safe_output.hpp"

#include <cstdio>

namespace layerfreeze::cli {

namespace {

bool is_control(unsigned char c) { return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f; }

}  // namespace

SafeOutput::SafeOutput(std::ostream& stream) : stream_(stream), inner_(stream.rdbuf(this)) {}

SafeOutput::~SafeOutput() { stream_.rdbuf(inner_); }

std::streamsize SafeOutput::xsputn(const char* s, std::streamsize n) {
  std::streamsize i = 0;
  while (i < n) {
    // A run without control characters goes out in one call.
    std::streamsize run = i;
    while (run < n && !is_control(static_cast<unsigned char>(s[run]))) ++run;
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
