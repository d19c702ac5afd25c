#include "sources/json_file.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace layerfreeze {

namespace {

// The first characters at `pos`, on one line, for a message.
std::string excerpt(const std::string& text, size_t pos) {
  std::string s = text.substr(std::min(pos, text.size()), 24);
  s = s.substr(0, s.find('\n'));
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return s;
}

}  // namespace

SourceLoc text_position(const std::string& text, size_t pos, const std::string& file) {
  pos = std::min(pos, text.size());
  int line = 1, col = 1;
  for (size_t i = 0; i < pos; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {file, line, col};
}

std::optional<nlohmann::json> parse_json_text(const std::string& text, const std::string& file,
                                              const std::string& what, Diagnostics& diags) {
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!value.is_discarded()) return value;
  // Parse the first value on its own, so text after it is reported as what it is.
  size_t end = 0;
  bool ok = true;
  std::string error;
  size_t error_at = 0;
  {
    std::istringstream in(text);
    try {
      in >> value;
      end = in.tellg() == std::streampos(-1) ? text.size() : static_cast<size_t>(in.tellg());
    } catch (const nlohmann::json::parse_error& e) {
      ok = false;
      error = e.what();
      error_at = e.byte > 0 ? e.byte - 1 : 0;
    } catch (const nlohmann::json::exception& e) {
      // A number too large for any JSON number type ("1e999"): nlohmann names it, not where.
      std::string why = e.what();
      auto close = why.find("] ");
      if (close != std::string::npos) why = why.substr(close + 2);
      diags.error("json-syntax", what + " is not valid JSON: " + why, {file, 0, 0});
      return std::nullopt;
    }
  }
  if (!ok) {
    // nlohmann's text: "[json.exception.parse_error.101] parse error at line 1, column 2: ...".
    std::string why = error;
    auto colon = why.find(": ", why.find("parse error"));
    if (colon != std::string::npos) why = why.substr(colon + 2);
    SourceLoc at = text_position(text, error_at, file);
    diags.error("json-syntax",
                what + " is not valid JSON at " + std::to_string(at.line) + ":" +
                    std::to_string(at.column) + ": " + why,
                at);
    return std::nullopt;
  }
  size_t rest = text.find_first_not_of(" \t\r\n", end);
  if (rest != std::string::npos) {
    SourceLoc at = text_position(text, rest, file);
    diags.error("json-trailing-text",
                what + " has text after its JSON value, at " + std::to_string(at.line) + ":" +
                    std::to_string(at.column) + " (character " + std::to_string(rest + 1) + "): '" +
                    excerpt(text, rest) + "'",
                at,
                {"the JSON value ends at character " + std::to_string(end) +
                 "; a leftover merge-conflict marker or a second value follows it"});
    return std::nullopt;
  }
  return value;
}

namespace {
thread_local const ModelFolders* innermost = nullptr;
}  // namespace

ModelFolders::ModelFolders(std::vector<std::filesystem::path> folders)
    : folders_(std::move(folders)), outer_(innermost) {
  innermost = this;
}

ModelFolders::~ModelFolders() { innermost = outer_; }

const std::vector<std::filesystem::path>* ModelFolders::current() {
  return innermost ? &innermost->folders_ : nullptr;
}

FileRead model_file_read(const std::string& what, uint64_t max_bytes) {
  FileRead how;
  how.what = what;
  how.max_bytes = max_bytes;
  how.folders = ModelFolders::current();
  how.outside_code = "model-outside";
  how.outside_notes = {
      "a checkpoint's files may lie only below the folders of what was named "
      "(set LAYERFREEZE_EXTENDS_PATH to allow another)"};
  how.not_found_code = "model-unreadable";
  how.unreadable_code = "model-unreadable";
  how.too_large_code = "model-too-large";
  return how;
}

std::optional<std::string> read_text_file(const std::string& path, const std::string& what,
                                          Diagnostics& diags, uint64_t max_bytes) {
  return read_file(path, path, model_file_read(what, max_bytes), diags);
}

std::optional<nlohmann::json> read_json_file(const std::string& path, const std::string& what,
                                             Diagnostics& diags, uint64_t max_bytes) {
  // `what` may be the file's own name in quotes ("'m.json'"): reading errors name it once.
  auto text =
      read_text_file(path, what.rfind('\'', 0) == 0 ? "model file" : what, diags, max_bytes);
  if (!text) return std::nullopt;
  return parse_json_text(*text, path, what, diags);
}

}  // namespace layerfreeze
