// Inventory printers for `layerfreeze inspect`: what discovery found (stacks, layers, roles,
// ties, the pattern that matched) as text, and the inventory as a JSON manifest that
// `--model m.json` reads back.
#pragma once

#include <string>

#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

std::string inventory_text(const Inventory& inv, bool all_params);
std::string inventory_json(const Inventory& inv);  // "layerfreeze.manifest/1"

class JsonWriter;
/// The "stacks", "towers" and "connectors" keys of both JSON formats (docs/CLI.md).
void structure_json(JsonWriter& j, const Inventory& inv);

}  // namespace layerfreeze
