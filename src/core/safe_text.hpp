// Text from untrusted input, made safe to show (docs/SECURITY.md): names from a checkpoint, values
// from a rules file or a lock, parts of a file that failed to parse. A terminal sees no control
// characters (an ESC from a tensor name could retitle it or erase a line), and a message quotes
// at most a short prefix of a value, never a whole line of a file it was not asked to read.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace layerfreeze {

/// What starts at s[i]: a well-formed UTF-8 sequence of `bytes` (1 to 4; RFC 3629: no overlong
/// forms, no surrogates, nothing above U+10FFFF), or an ill-formed part of `bytes` (the longest
/// start of a sequence that could still have been well-formed, at least one byte) that a writer
/// replaces with one U+FFFD.
struct Utf8Scan {
  size_t bytes = 1;
  bool well_formed = true;
};
Utf8Scan utf8_scan(std::string_view s, size_t i);

/// `s` for a terminal or a log: control characters as escapes (`\n`, `\t`, `\x1b`, `\x7f`), C1
/// controls and ill-formed UTF-8 as U+FFFD; everything else as it is. `keep_tabs` keeps tabs
/// (a source line under which a caret is aligned).
std::string display_text(std::string_view s, bool keep_tabs = false);

/// `s` quoted for a message: display_text, at most `max_chars` characters (then "…" and how long
/// it was), in single quotes unless `quotes` is false.
std::string quoted_value(std::string_view s, size_t max_chars = 60, bool quotes = true);

}  // namespace layerfreeze
