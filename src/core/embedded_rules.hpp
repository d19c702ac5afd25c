// The files of rules/ (presets, discovery patterns, schema), compiled into the library.
#pragma once

#include <string>
#include <vector>

namespace layerfreeze {

struct EmbeddedFile {
  const char* name;  // "lp_lora.yaml"
  const char* text;
};

const std::vector<EmbeddedFile>& embedded_rule_files();
/// The text of rules/NAME, or nullptr.
const char* embedded_rule_file(const std::string& name);

}  // namespace layerfreeze
