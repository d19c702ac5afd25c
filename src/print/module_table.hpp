// The seed API's model summary: a box-drawing table of a model's modules (cut to a depth), their
// parameter counts and whether they train (✓), are frozen (✗) or partly frozen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

struct ModuleTable {
  struct Row {
    std::string name;  // the module path cut to the depth asked for
    int64_t numel = 0, frozen = 0;
  };
  std::string model_type;
  std::vector<Row> rows;  // in registration order
  int64_t total = 0, frozen = 0;
  int64_t bytes = 0;  // of all parameters, as stored
};

/// One row per module path cut to `max_depth` parts; `frozen[i]` tells about inv.params()[i].
ModuleTable module_table(const Inventory& inv, const std::vector<bool>& frozen, int max_depth);

/// The table as text, 73 columns wide.
std::string module_table_text(const ModuleTable& t);

}  // namespace layerfreeze
