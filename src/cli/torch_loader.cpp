// Loads TorchScript models through the torch adapter, found and dlopen'ed only when a `.pt`
// model is asked for: every other command keeps starting in milliseconds (libtorch alone costs
// ~0.7 s to load).
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>

#include "cli/cli_common.hpp"

namespace layerfreeze::cli {

namespace {

using ManifestFn = int (*)(const char*, char**, char**);

// Where the adapter may be: $LAYERFREEZE_TORCH_ADAPTER, beside the executable (a build tree),
// ../lib (an installed prefix), then the dynamic linker's own search.
std::vector<std::string> candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LAYERFREEZE_TORCH_ADAPTER"))
    return {env};  // the user's word is final
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    auto dir = std::filesystem::path(self).parent_path();
    out.push_back((dir / "liblayerfreeze_torch.so").string());
    out.push_back(
        (dir.parent_path() / LAYERFREEZE_INSTALL_LIBDIR / "liblayerfreeze_torch.so").string());
    out.push_back((dir.parent_path() / "lib" / "liblayerfreeze_torch.so").string());
  }
  out.push_back("liblayerfreeze_torch.so");
  return out;
}

std::optional<Inventory> load_torchscript(const std::string& path, Diagnostics& diags) {
  std::string tried;
  void* handle = nullptr;
  for (const auto& c : candidates()) {
    if (c.find('/') != std::string::npos && !std::filesystem::exists(c)) continue;
    handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle) break;
    tried += std::string("\n  ") + c + ": " + dlerror();
  }
  if (!handle) {
    diags.error(
        "torch-adapter-missing",
        "reading a TorchScript model needs the torch adapter (liblayerfreeze_torch.so) and "
        "libtorch, and "
        "neither could be loaded",
        {path, 0, 0},
        {"build with libtorch-dev installed (scripts/install-deps.sh --with-torch), or point "
         "LAYERFREEZE_TORCH_ADAPTER at the library" +
         tried});
    return std::nullopt;
  }
  auto fn = reinterpret_cast<ManifestFn>(dlsym(handle, "layerfreeze_torchscript_manifest"));
  if (!fn) {
    diags.error("torch-adapter-missing",
                "the torch adapter has no entry point layerfreeze_torchscript_manifest",
                {path, 0, 0});
    return std::nullopt;
  }
  char* manifest = nullptr;
  char* error = nullptr;
  int rc = fn(path.c_str(), &manifest, &error);
  std::optional<Inventory> inv;
  if (rc == 0 && manifest) {
    inv = parse_manifest(manifest, path, diags);
    if (inv && inv->facts().source != path) {
      ModelFacts named = inv->facts();
      named.source = path;
      inv = Inventory(std::move(named));
    }
  } else {
    diags.error("torchscript-load", error ? error : "cannot load the TorchScript model",
                {path, 0, 0});
  }
  std::free(manifest);
  std::free(error);
  // The handle stays open: libtorch does not support being unloaded.
  return inv;
}

}  // namespace

void install_torchscript_loader() { set_torchscript_loader(&load_torchscript); }

}  // namespace layerfreeze::cli
