// A finetuning-scheduler explicit schedule (its YAML: phases of `params` thawed one after another
// at `max_transition_epoch`, each with an optional `lr`) turned into the equivalent layerfreeze
// rules file (docs/PEERS.md). What FTS decides at run time — a phase that ends when its early
// stopping says so — has no equivalent in a plan and is an error naming the phase.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

struct FtsImport {
  std::string rules_yaml;          // the rules file, with comments saying where each part came from
  std::vector<std::string> notes;  // what FTS does that the rules leave to the trainer
  size_t phases = 0;
};

/// FinetuningScheduler's own default for a phase without `lr` (its `base_max_lr` argument).
constexpr double kFtsBaseMaxLr = 1e-5;

/// Translates `text` (the schedule, read from `file`). A phase after the first without an `lr`
/// gets `base_max_lr`, as FTS gives it; phases start one epoch apart at least. FTS takes an entry
/// that names a parameter (of named_parameters(): a tied tensor's first name) as that name, and
/// any other as a regex matched at the start of names (Python's re.match). `model`, when given,
/// decides which entries are names, and each phase is written as the exact names FTS would thaw;
/// an entry that selects nothing and phases that overlap are errors, an entry that names only an
/// alias is dropped with a note. Without a model every entry is read as a regex at the start of
/// names. Patterns Python's re and RE2 read differently are errors (fts-regex). Errors go to
/// `diags` with the schedule's line and column.
std::optional<FtsImport> import_fts_schedule(const std::string& text, const std::string& file,
                                             const Inventory* model, Diagnostics& diags,
                                             double base_max_lr = kFtsBaseMaxLr);

}  // namespace layerfreeze
