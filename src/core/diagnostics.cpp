#include "layerfreeze/diagnostics.hpp"

#include "core/hash.hpp"
#include "core/safe_text.hpp"

#include <algorithm>
#include <sstream>

namespace layerfreeze {

void SourceTexts::add(const std::string& file, std::string text) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else if (c != '\r') {
      cur.push_back(c);
    }
  }
  lines.push_back(cur);
  lines_[file] = std::move(lines);
}

std::string SourceTexts::digest() const {
  Hasher h;
  for (const auto& [file, lines] : lines_) {
    h.add(file);
    for (const auto& l : lines) h.add(l);
  }
  return h.hex();
}

const std::string* SourceTexts::line(const std::string& file, int line) const {
  auto it = lines_.find(file);
  if (it == lines_.end() || line < 1 || line > static_cast<int>(it->second.size())) return nullptr;
  return &it->second[line - 1];
}

void Diagnostics::add(Diagnostic d) {
  if (items_.size() >= kMaxKept) {
    ++dropped_[static_cast<size_t>(d.severity)];
    return;
  }
  items_.push_back(std::move(d));
}

void Diagnostics::error(std::string code, std::string message, SourceLoc loc,
                        std::vector<std::string> notes) {
  add({Severity::kError, std::move(code), std::move(message), std::move(loc), std::move(notes)});
}

void Diagnostics::warning(std::string code, std::string message, SourceLoc loc,
                          std::vector<std::string> notes) {
  add({Severity::kWarning, std::move(code), std::move(message), std::move(loc), std::move(notes)});
}

void Diagnostics::append(const Diagnostics& other) {
  for (const auto& d : other.items_) add(d);
  for (size_t k = 0; k < 3; ++k) dropped_[k] += other.dropped_[k];
}

size_t Diagnostics::count(Severity s) const {
  return dropped_[static_cast<size_t>(s)] +
         static_cast<size_t>(std::count_if(items_.begin(), items_.end(),
                                           [s](const Diagnostic& d) { return d.severity == s; }));
}

void Diagnostics::promote_warnings() {
  dropped_[static_cast<size_t>(Severity::kError)] +=
      dropped_[static_cast<size_t>(Severity::kWarning)];
  dropped_[static_cast<size_t>(Severity::kWarning)] = 0;
  for (auto& d : items_) {
    if (d.severity == Severity::kWarning) {
      d.severity = Severity::kError;
    }
  }
}

constexpr size_t kMaxMessageChars = 2000;

static const char* severity_word(Severity s) {
  switch (s) {
    case Severity::kError: return "error";
    case Severity::kWarning: return "warning";
    case Severity::kNote: return "note";
  }
  return "error";
}

std::string format_diagnostic(const Diagnostic& d, const SourceTexts* sources) {
  std::ostringstream out;
  if (!d.loc.file.empty()) {
    out << display_text(d.loc.file);
    if (d.loc.known()) out << ':' << d.loc.line << ':' << d.loc.column;
    out << ": ";
  }
  out << severity_word(d.severity) << ": " << quoted_value(d.message, kMaxMessageChars, false);
  if (!d.code.empty()) out << " [" << d.code << ']';
  out << '\n';
  if (sources && d.loc.known()) {
    if (const std::string* full = sources->line(d.loc.file, d.loc.line)) {
      // Long lines are shown as a window around the column.
      const size_t kWidth = 100;
      size_t col = static_cast<size_t>(d.loc.column > 0 ? d.loc.column - 1 : 0);
      size_t begin = 0;
      std::string line = *full;
      if (line.size() > kWidth) {
        begin = std::min(col > kWidth / 2 ? col - kWidth / 2 : 0, full->size());
        line = (begin > 0 ? "…" : "") + full->substr(begin, kWidth) +
               (begin + kWidth < full->size() ? "…" : "");
      }
      out << "  " << display_text(line, /*keep_tabs=*/true) << '\n';
      std::string pad = begin > 0 ? " " : "";
      // Keep tabs so the caret lines up under the same column in a terminal.
      for (size_t i = begin; i < col && i < full->size(); ++i)
        pad.push_back((*full)[i] == '\t' ? '\t' : ' ');
      out << "  " << pad << "^\n";
    }
  }
  for (const auto& n : d.notes)
    out << "  note: " << quoted_value(n, kMaxMessageChars, false) << '\n';
  return out.str();
}

std::string format_diagnostics(const Diagnostics& ds, const SourceTexts* sources) {
  std::string out;
  for (const auto& d : ds.items()) out += format_diagnostic(d, sources);
  return out + format_dropped(ds);
}

std::string format_dropped(const Diagnostics& ds) {
  if (ds.dropped() == 0) return "";
  return "note: " + std::to_string(ds.dropped()) + " more (" +
         std::to_string(ds.dropped(Severity::kError)) +
         " of them errors) not shown: only the first " + std::to_string(Diagnostics::kMaxKept) +
         " are kept\n";
}

// Edits between two words, a swap of two neighbours counting as one (the commonest typo:
// `dtpye`, `shpae`): optimal string alignment distance.
static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> before(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], before[j - 2] + 1);
    }
    std::swap(before, prev);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // A typo, not a different word: at most a third of the longer word, and at least one edit.
  size_t limit = std::max<size_t>(1, std::max(word.size(), best.size()) / 3);
  if (best_d == std::string::npos || best_d > limit) return "";
  return best;
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string m = closest_match(word, candidates);
  return m.empty() ? "" : " — did you mean '" + m + "'?";
}

DiagnosticError::DiagnosticError(Diagnostics ds, const SourceTexts* sources) : ds_(std::move(ds)) {
  text_ = format_diagnostics(ds_, sources);
  if (!text_.empty() && text_.back() == '\n') text_.pop_back();
}

}  // namespace layerfreeze
