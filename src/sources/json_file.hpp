// Reading a JSON file with errors that name the cause and the place: a syntax error or trailing
// text after the value (a leftover merge-conflict marker) comes with line:column and the first
// characters found there, not as "not an index".
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/file_access.hpp"
#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

/// The 1-based line and column of byte `pos` of `text`.
SourceLoc text_position(const std::string& text, size_t pos, const std::string& file);

/// Parses `text` (from `file`, described as `what`: "a safetensors index", "config.json").
/// Errors go to `diags` with the code `json-syntax` or `json-trailing-text`.
std::optional<nlohmann::json> parse_json_text(const std::string& text, const std::string& file,
                                              const std::string& what, Diagnostics& diags);
/// Reads a file of at most `max_bytes` (`what` names it in errors) through the one file policy
/// (core/file_access.hpp), confined to the model's folders while a ModelFolders scope is open.
std::optional<std::string> read_text_file(const std::string& path, const std::string& what,
                                          Diagnostics& diags, uint64_t max_bytes = 256ull << 20);

/// While one is alive (on this thread), every file a model source reads besides the one the user
/// named — a config.json beside it, an index or safetensors file inside a checkpoint folder — must
/// lie below `folders` (allowed_folders of what the user named): a checkpoint from a pull request
/// cannot make layerfreeze read /proc/self/environ through a symlink named config.json.
class ModelFolders {
 public:
  explicit ModelFolders(std::vector<std::filesystem::path> folders);
  ~ModelFolders();
  ModelFolders(const ModelFolders&) = delete;
  ModelFolders& operator=(const ModelFolders&) = delete;
  /// The folders of the innermost scope; nullptr when none is open.
  static const std::vector<std::filesystem::path>* current();

 private:
  std::vector<std::filesystem::path> folders_;
  const ModelFolders* outer_;
};
/// The file policy for a model's file `what`: model-* error codes, the current folders.
FileRead model_file_read(const std::string& what, uint64_t max_bytes);
/// Reads and parses a file of at most `max_bytes`.
std::optional<nlohmann::json> read_json_file(const std::string& path, const std::string& what,
                                             Diagnostics& diags, uint64_t max_bytes = 256ull << 20);

}  // namespace layerfreeze
