// Reading a JSON file with errors that name the cause and the place: a syntax error or trailing
// text after the value (a leftover merge-conflict marker) comes with line:column and the first
// characters found there, not as "not an index".
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

/// The 1-based line and column of byte `pos` of `text`.
SourceLoc text_position(const std::string& text, size_t pos, const std::string& file);

/// Parses `text` (from `file`, described as `what`: "a safetensors index", "config.json").
/// Errors go to `diags` with the code `json-syntax` or `json-trailing-text`.
std::optional<nlohmann::json> parse_json_text(const std::string& text, const std::string& file,
                                              const std::string& what, Diagnostics& diags);
/// Reads a file of at most `max_bytes` (`what` names it in errors).
std::optional<std::string> read_text_file(const std::string& path, const std::string& what,
                                          Diagnostics& diags, uint64_t max_bytes = 256ull << 20);
/// Reads and parses a file of at most `max_bytes`.
std::optional<nlohmann::json> read_json_file(const std::string& path, const std::string& what,
                                             Diagnostics& diags, uint64_t max_bytes = 256ull << 20);

}  // namespace layerfreeze
