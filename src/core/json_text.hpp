// json_text: how layerfreeze writes a nlohmann-json value (the canonical plan, locks, rank records,
// the HTML report's data, values quoted in messages). A string that is not well-formed UTF-8 (a
// TorchScript module's name, a path) is written with U+FFFD in place of each bad byte, as the
// streaming JsonWriter (print/json_writer.hpp) does, instead of throwing: every JSON the tool
// writes is valid UTF-8. Nothing calls `dump()` directly.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace layerfreeze {

/// `j` as JSON text: compact (indent < 0) or indented by `indent` spaces; keys in the order the
/// value holds them (sorted for nlohmann::json).
std::string json_text(const nlohmann::json& j, int indent = -1);

}  // namespace layerfreeze
