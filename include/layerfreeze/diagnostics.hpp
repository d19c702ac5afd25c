// Diagnostics: errors, warnings and notes as values. The library collects them; only the CLI
// prints. Each one a user can cause has a stable code, a source location and, where it helps,
// a suggestion ("did you mean ...").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace layerfreeze {

/// A position in a source text: 1-based line and column; line 0 means "no location".
struct SourceLoc {
  std::string file;
  int line = 0;
  int column = 0;
  bool known() const { return line > 0; }
};

enum class Severity { kError, kWarning, kNote };

/// One message about an input, with where it is and how to fix it.
struct Diagnostic {
  Severity severity = Severity::kError;
  std::string code;     // stable kebab-case identifier, e.g. "unknown-key"
  std::string message;  // one line, no trailing period
  SourceLoc loc;
  std::vector<std::string> notes;  // extra lines ("note: ...")
};

/// The texts of source files, so diagnostics can quote the offending line with a caret.
class SourceTexts {
 public:
  void add(const std::string& file, std::string text);
  /// The 1-based line of `file`, or nullptr when unknown.
  const std::string* line(const std::string& file, int line) const;
  /// A stable hash (hex) of every file's name and text: a lock file records it.
  std::string digest() const;
  /// Adds every text of `other` (a file already here is replaced).
  void merge(const SourceTexts& other) {
    for (const auto& [file, lines] : other.lines_) lines_[file] = lines;
  }

 private:
  std::map<std::string, std::vector<std::string>> lines_;
};

/// Collects diagnostics in the order they are found: the first kMaxKept of them; past that
/// (a hostile manifest of a million bad entries) only how many more of each severity there were,
/// which count() includes and format_diagnostics() reports.
class Diagnostics {
 public:
  static constexpr size_t kMaxKept = 1000;
  void error(std::string code, std::string message, SourceLoc loc = {},
             std::vector<std::string> notes = {});
  void warning(std::string code, std::string message, SourceLoc loc = {},
               std::vector<std::string> notes = {});
  void add(Diagnostic d);
  void append(const Diagnostics& other);

  bool has_errors() const { return count(Severity::kError) > 0; }
  size_t count(Severity s) const;
  const std::vector<Diagnostic>& items() const { return items_; }
  bool empty() const { return items_.empty(); }
  /// How many were not kept (past kMaxKept).
  size_t dropped() const { return dropped_[0] + dropped_[1] + dropped_[2]; }
  size_t dropped(Severity s) const { return dropped_[static_cast<size_t>(s)]; }
  /// Warnings become errors (`--strict`).
  void promote_warnings();

 private:
  std::vector<Diagnostic> items_;
  size_t dropped_[3] = {0, 0, 0};  // by Severity
};

/// "file:line:col: error: message [code]", then the source line and a caret under the column,
/// then each note. Control characters are shown escaped and a message or note is cut after 2,000
/// characters (core/safe_text.hpp): text from a hostile file cannot drive a terminal or flood it.
std::string format_diagnostic(const Diagnostic& d, const SourceTexts* sources = nullptr);
std::string format_diagnostics(const Diagnostics& ds, const SourceTexts* sources = nullptr);
/// "note: N more (E of them errors) not shown: …" when `ds` kept only its first kMaxKept; ""
/// otherwise. format_diagnostics ends with it; a printer of its own prints it last.
std::string format_dropped(const Diagnostics& ds);

/// The candidate closest to `word` by edit distance, if close enough to be a likely typo.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);
/// " — did you mean 'x'?" or "" when nothing is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

/// Thrown by APIs that cannot return Diagnostics (e.g. constructors); carries them all.
class DiagnosticError : public std::exception {
 public:
  explicit DiagnosticError(Diagnostics ds, const SourceTexts* sources = nullptr);
  const char* what() const noexcept override { return text_.c_str(); }
  const Diagnostics& diagnostics() const { return ds_; }

 private:
  Diagnostics ds_;
  std::string text_;
};

}  // namespace layerfreeze
