// Plan locks (docs/CLI.md, "Versioned strategies"): `plan --lock FILE` records what a versioned
// experiment's strategy resolves to — its source and parameters, a digest of its text, the
// model's and the plan's fingerprints, the canonical plan, per-stage counts — and `layerfreeze
// check FILE` compiles it again and fails, with the differences, when the plan no longer matches: a
// new layerfreeze, a changed preset or another checkpoint cannot change an experiment silently.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/cli_common.hpp"

#ifndef LAYERFREEZE_VERSION_TEXT
#define LAYERFREEZE_VERSION_TEXT "unknown"
#endif

namespace layerfreeze::cli {

nlohmann::json lock_json(const PlanArgs& a, const std::string& rules_spec, const Plan& plan,
                         const PlanReport& report, const std::string& text_digest);
/// The arguments that compile a lock's plan again. A lock is checked against its schema first:
/// every missing field, wrong type, unknown optimizer or insane number is one `lock-format`
/// error in `diags` (`lock-old` for a layerfreeze.lock/1), and the result is nullopt.
std::optional<PlanArgs> args_of_lock(const nlohmann::json& lock, const std::string& file,
                                     std::string& rules_spec, Diagnostics& diags);

struct LockCheck {
  bool matches = true;
  std::string differences;  // what no longer matches, a line each
  std::string notes;        // what changed without changing the plan
};
/// Compares the canonical plans (and per-stage counts) of two locks; `names` names tensors.
LockCheck compare_locks(const nlohmann::json& locked, const nlohmann::json& now,
                        const Inventory* names = nullptr);

}  // namespace layerfreeze::cli
