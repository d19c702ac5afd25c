// Rules read from a git revision: `REV:PATH` (`HEAD~1:train/freeze.yaml`) wherever a rules file
// is given, so `diff HEAD~1:freeze.yaml freeze.yaml --model …` shows what a change does. Read
// with git (no shell, no textconv); PATH is relative to the current directory, like any other
// path, and what the file extends is read at the same revision.
#pragma once

#include <optional>
#include <string>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze::cli {

/// Whether `spec` is REV:PATH (not preset:NAME, not an existing file whose name has a colon).
bool is_git_spec(const std::string& spec);
/// The strategy in the file at the revision, with what it `extends:` read at that same revision
/// (inside the repository only, 1 MiB a file). An error (outside a repository, unknown
/// revision, missing path) names the spec.
std::optional<Strategy> load_git_strategy(const std::string& spec, const std::string& section,
                                          Diagnostics& d, SourceTexts& texts);

}  // namespace layerfreeze::cli
