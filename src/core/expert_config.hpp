// ExpertConfig: an ESFT expert config (Wang et al., 2024) — which routed experts of each
// mixture-of-experts layer train — read with every error located and checked against a model,
// and written in the format ESFT's own scripts read:
//
//   {"experts": {"1": [8, 26, 55], "2": [57, 19]}, "shared_experts": false,
//    "non_expert_modules": false}
//
// Keys are layer indices as strings (the trunk's layer numbers, as `layers:` counts them); dense
// layers are absent. docs/EXPERTS.md shows how to produce one (ExpertStats).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

struct ExpertConfig {
  std::map<int32_t, std::vector<int32_t>> experts;  // layer -> its trainable experts, as listed
  bool shared_experts = false;                      // shared experts train too
  bool non_expert_modules = false;                  // everything outside the experts trains too
};

/// Reads the ESFT config at `path` (shown as `shown` in messages) and checks it against `inv`:
/// every layer it names exists and has routed experts, every expert index is below the model's
/// expert count. Errors name the file, the layer and the count; `named_at` (the rule that names
/// the file) is added as a note. Warns about MoE layers the file leaves out.
/// Where an expert config written as `written` lies: a path written in a rules file (`literal`) is
/// relative to that file (`named_at.file`); one from a parameter to the working directory.
std::string expert_config_path(const std::string& written, const SourceLoc& named_at, bool literal);
/// Whether the expert config a rules file names (at `named_at`) may be read — inside the folders
/// a rules file may reach, a regular file, within the size limit — without reading it (`validate`
/// without a model); false after one error.
bool check_expert_config_file(const std::string& path, const std::string& shown,
                              const SourceLoc& named_at, Diagnostics& diags);
/// `confined`: the path came from a rules file, so the file must lie below the folders a rules
/// file may reach (core/file_access.hpp); a path the caller gave (`--set`) is read where it is.
std::optional<ExpertConfig> read_expert_config(const std::string& path, const std::string& shown,
                                               const Inventory& inv, Diagnostics& diags,
                                               const SourceLoc& named_at = {},
                                               bool confined = true);

/// Parses ESFT JSON text without a model (format errors only; `file` names it in messages).
std::optional<ExpertConfig> parse_expert_config(const std::string& text, const std::string& file,
                                                Diagnostics& diags);

/// The config as ESFT JSON: layer keys as strings in numeric order, experts as listed.
std::string expert_config_json(const ExpertConfig& c);

}  // namespace layerfreeze
