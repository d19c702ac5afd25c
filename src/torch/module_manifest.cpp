// A live module's inventory, and the manifest of it CI plans from (docs/API.md, "The CI plan is
// the trainer's plan"): names in registration order, shapes, dtypes, module types and ties — what
// the executor compiles against — in the format `layerfreeze inspect --format json` writes, so a
// `{module_type: …}` rule selects the same tensors in CI as in the trainer.
#include <c10/util/Exception.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/nn/module.h>

#include "core/discovery_patterns.hpp"
#include "core/file_access.hpp"
#include "core/layer_discovery.hpp"
#include "layerfreeze/executor.hpp"
#include "print/inventory_printer.hpp"
#include "torch/errors.hpp"
#include "torch/live_model.hpp"

namespace layerfreeze {

namespace {

template <class Module>
Inventory inventory_of_module(Module& model, const std::string& kind) {
  LiveModel live;
  try {
    live = live_model(model);
  } catch (const c10::Error& e) {
    fail("torch-error",
         std::string("cannot read the module's parameters: ") + e.what_without_backtrace());
  }
  live.facts.source = kind + live.facts.model_type + " module";
  Inventory inv(std::move(live.facts));
  // The structure too, for a reader of the file (plan and compile discover it again).
  Diagnostics ignored;
  discover_layers(inv, DiscoveryPatterns::shipped(), ignored);
  return inv;
}

void write(const Inventory& inv, const std::string& path) {
  std::string error;
  if (!write_file_atomic(path, inventory_json(inv), &error))
    fail("manifest-write", error, {"write_manifest replaces a regular file or makes a new one"});
}

}  // namespace

Inventory inventory_of(torch::nn::Module& model) { return inventory_of_module(model, "the "); }
Inventory inventory_of(torch::jit::Module& model) {
  return inventory_of_module(model, "the TorchScript ");
}

void write_manifest(torch::nn::Module& model, const std::string& path) {
  write(inventory_of(model), path);
}
void write_manifest(torch::jit::Module& model, const std::string& path) {
  write(inventory_of(model), path);
}

}  // namespace layerfreeze
