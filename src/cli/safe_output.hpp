// What the CLI prints goes through SafeOutput: a control character that is not a newline or a
// tab is printed as an escape (`\x1b`), whatever printed it — a tensor name from a hostile
// checkpoint (`ESC]0;…`, `\r ESC[2K`) cannot retitle the terminal or erase what was printed
// (docs/SECURITY.md). JSON, SVG and HTML never hold such characters raw, so they pass unchanged.
#pragma once

#include <ostream>
#include <streambuf>

namespace layerfreeze::cli {

class SafeOutput : public std::streambuf {
 public:
  /// Filters `stream` from now until this object is destroyed.
  explicit SafeOutput(std::ostream& stream);
  ~SafeOutput() override;
  SafeOutput(const SafeOutput&) = delete;
  SafeOutput& operator=(const SafeOutput&) = delete;

 protected:
  int_type overflow(int_type c) override;
  std::streamsize xsputn(const char* s, std::streamsize n) override;
  int sync() override;

 private:
  std::ostream& stream_;
  std::streambuf* inner_;
};

}  // namespace layerfreeze::cli
