// A finetuning-scheduler explicit schedule (its YAML: phases of `params` thawed one after another,
// each when FTSEarlyStopping sees its monitor plateau or at its `max_transition_epoch`, with an
// optional `lr`) turned into the equivalent layerfreeze rules file (docs/PEERS.md): early
// stopping becomes metric-triggered stages (docs/RULES.md, "Metric triggers").
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

/// FTS's FTSEarlyStopping, which ends a phase when its monitored metric stops improving — FTS's
/// default (epoch_transitions_only off), with the defaults FTS gives the callback it adds.
struct FtsEarlyStopping {
  std::string monitor = "val_loss";
  bool maximize = false;  // mode: max
  int64_t patience = 3;
  double min_delta = 0;
};

struct FtsImportOptions {
  double base_max_lr = kFtsBaseMaxLr;
  /// nullopt: FTS's epoch_transitions_only (a phase ends at its max_transition_epoch only).
  std::optional<FtsEarlyStopping> early_stopping = FtsEarlyStopping{};
};

/// The FinetuningScheduler and FTSEarlyStopping settings of a Lightning CLI config
/// (`trainer: callbacks: [{class_path: ..., init_args: {...}}]`), over `base`: monitor, mode,
/// patience, min_delta; epoch_transitions_only, base_max_lr. Errors go to `diags` (file:line).
std::optional<FtsImportOptions> read_lightning_config(const std::string& text,
                                                      const std::string& file,
                                                      FtsImportOptions base, Diagnostics& diags);

/// Translates `text` (the schedule, read from `file`). A phase after the first without an `lr`
/// gets `base_max_lr`, as FTS gives it; phases start one epoch apart at least. FTS takes an entry
/// that names a parameter (of named_parameters(): a tied tensor's first name) as that name, and
/// any other as a regex matched at the start of names (Python's re.match). `model`, when given,
/// decides which entries are names, and each phase is written as the exact names FTS would thaw;
/// an entry that selects nothing and phases that overlap are errors, an entry that names only an
/// alias is dropped with a note. Without a model every entry is read as a regex at the start of
/// names. Patterns Python's re and RE2 read differently are errors (fts-regex). Errors go to
/// `diags` with the schedule's line and column.
/// With early stopping (FTS's default), phase k+1 is a metric stage on the monitor: it starts at
/// the phase's plateau, at phase k's max_transition_epoch at the latest.
std::optional<FtsImport> import_fts_schedule(const std::string& text, const std::string& file,
                                             const Inventory* model, Diagnostics& diags,
                                             const FtsImportOptions& options = {});

}  // namespace layerfreeze
