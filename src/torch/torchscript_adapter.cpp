// The C entry point the CLI finds with dlopen, so that only a TorchScript model pulls libtorch
// into the process: it loads the file and returns its inventory as a JSON manifest.
#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cstdlib>
#include <cstring>

#include "print/inventory_printer.hpp"
#include "torch/live_model.hpp"

namespace {
char* copy(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}
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
    live.inventory.source = path;
    *manifest = copy(layerfreeze::inventory_json(live.inventory));
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
