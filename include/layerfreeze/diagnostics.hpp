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

/// Collects diagnostics in the order they are found.
class Diagnostics {
 public:
  void error(std::string code, std::string message, SourceLoc loc = {},
             std::vector<std::string> notes = {});
  void warning(std::string code, std::string message, SourceLoc loc = {},
               std::vector<std::string> notes = {});
  void add(Diagnostic d) { items_.push_back(std::move(d)); }
  void append(const Diagnostics& other);

  bool has_errors() const { return count(Severity::kError) > 0; }
  size_t count(Severity s) const;
  const std::vector<Diagnostic>& items() const { return items_; }
  bool empty() const { return items_.empty(); }
  /// Warnings become errors (`--strict`).
  void promote_warnings();

 private:
  std::vector<Diagnostic> items_;
};

/// "file:line:col: error: message [code]", then the source line and a caret under the column,
/// then each note.
std::string format_diagnostic(const Diagnostic& d, const SourceTexts* sources = nullptr);
std::string format_diagnostics(const Diagnostics& ds, const SourceTexts* sources = nullptr);

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
