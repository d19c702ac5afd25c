// TorchScript files as a model source. A program linked with the adapter reads them directly:
// the loader registers itself when the adapter is loaded (load_model("model.pt") just works, as
// model_source.hpp promises). The CLI, which never links libtorch, finds the C entry point below
// with dlopen instead, so only a TorchScript model pulls libtorch into its process.
#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cstdlib>
#include <cstring>

#include "layerfreeze/model_source.hpp"
#include "print/inventory_printer.hpp"
#include "torch/live_model.hpp"

namespace {
char* copy(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

std::optional<layerfreeze::Inventory> load_directly(const std::string& path,
                                                    layerfreeze::Diagnostics& diags) {
  try {
    torch::jit::Module m = torch::jit::load(path);
    layerfreeze::LiveModel live = layerfreeze::live_model(m);
    live.facts.source = path;
    return layerfreeze::Inventory(std::move(live.facts));
  } catch (const c10::Error& e) {
    diags.error(
        "model-unreadable",
        std::string("cannot load TorchScript model '") + path + "': " + e.what_without_backtrace(),
        {path, 0, 0});
  } catch (const std::exception& e) {
    diags.error("model-unreadable",
                std::string("cannot load TorchScript model '") + path + "': " + e.what(),
                {path, 0, 0});
  }
  return std::nullopt;
}

// Registered when the adapter is loaded: the loader pointer is constant-initialised (nullptr)
// before any dynamic initialiser runs, so the order of static initialisation does not matter.
const bool registered = [] {
  layerfreeze::set_torchscript_loader(&load_directly);
  return true;
}();
}  // namespace

extern "C" {

/// Loads the TorchScript file at `path`. On success returns 0 and a malloc'd manifest in
/// `*manifest`; on failure returns 1 and a malloc'd message in `*error`. The caller frees.
__attribute__((visibility("default"))) int layerfreeze_torchscript_manifest(const char* path,
                                                                            char** manifest,
                                                                            char** error) {
  *manifest = nullptr;
  *error = nullptr;
  try {
    torch::jit::Module m = torch::jit::load(path);
    layerfreeze::LiveModel live = layerfreeze::live_model(m);
    live.facts.source = path;
    *manifest = copy(layerfreeze::inventory_json(layerfreeze::Inventory(std::move(live.facts))));
    return 0;
  } catch (const c10::Error& e) {
    *error = copy(std::string("cannot load TorchScript model '") + path +
                  "': " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    *error = copy(std::string("cannot load TorchScript model '") + path + "': " + e.what());
  }
  return 1;
}

}  // extern "C"
