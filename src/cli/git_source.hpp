// Rules read from a git revision: `REV:PATH` (`HEAD~1:train/freeze.yaml`) wherever a rules file
// is given, so `diff HEAD~1:freeze.yaml freeze.yaml --model …` shows what a change does. Read
// with `git show`; PATH is relative to the current directory, like any other path.
#pragma once

#include <optional>
#include <string>

#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze::cli {

/// Whether `spec` is REV:PATH (not preset:NAME, not an existing file whose name has a colon).
bool is_git_spec(const std::string& spec);
/// The file's text at the revision; an error (outside a repository, unknown revision, missing
/// path) names the spec.
std::optional<std::string> read_git_spec(const std::string& spec, Diagnostics& d);

}  // namespace layerfreeze::cli
