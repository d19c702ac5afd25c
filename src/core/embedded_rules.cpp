#include "core/embedded_rules.hpp"

namespace layerfreeze {

const char* embedded_rule_file(const std::string& name) {
  for (const auto& f : embedded_rule_files())
    if (name == f.name) return f.text;
  return nullptr;
}

}  // namespace layerfreeze
