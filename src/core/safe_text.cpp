#include "core/safe_text.hpp"

#include <fmt/format.h>

#include <iterator>

namespace layerfreeze {

Utf8Scan utf8_scan(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return {1, true};
  // The second byte's range depends on the first (RFC 3629, section 4).
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlong forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // no overlong forms
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {1, false};
  }
  size_t k = 1;
  for (; k < len && i + k < s.size(); ++k) {
    const unsigned char b = byte(i + k);
    if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
  }
  return {k, k == len};
}

namespace {

// Appends the display form of the character at s[i]; returns its length in bytes.
size_t append_display(std::string& out, std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x20 || c == 0x7f) {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
    }
    return 1;
  }
  const Utf8Scan u = utf8_scan(s, i);
  // C1 controls (U+0080..U+009F, 0xC2 0x80..0x9F) act on terminals too.
  const bool c1 =
      u.well_formed && u.bytes == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0;
  if (!u.well_formed || c1)
    out += "\xEF\xBF\xBD";
  else
    out.append(s.data() + i, u.bytes);
  return u.bytes;
}

}  // namespace

std::string display_text(std::string_view s, bool keep_tabs) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    // Runs of printable ASCII go in one append.
    size_t plain = i;
    while (plain < s.size() && ((static_cast<unsigned char>(s[plain]) >= 0x20 &&
                                 static_cast<unsigned char>(s[plain]) < 0x7f) ||
                                (keep_tabs && s[plain] == '\t')))
      ++plain;
    out.append(s.data() + i, plain - i);
    i = plain;
    if (i < s.size()) i += append_display(out, s, i);
  }
  return out;
}

std::string quoted_value(std::string_view s, size_t max_chars, bool quotes) {
  std::string out = quotes ? "'" : "";
  size_t chars = 0, i = 0;
  for (; i < s.size() && chars < max_chars; ++chars) i += append_display(out, s, i);
  if (i < s.size()) out += "…";
  if (quotes) out += "'";
  if (i < s.size()) out += fmt::format(" ({} bytes)", s.size());
  return out;
}

}  // namespace layerfreeze
