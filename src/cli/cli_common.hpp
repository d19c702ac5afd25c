// What the subcommands share: loading rules and models with diagnostics printed the same way,
// compiling, choosing the horizon of a printed timeline, and the exit codes (0 ok, 1 invalid
// input, 2 usage).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/compiler.hpp"
#include "core/rules_parser.hpp"
#include "layerfreeze/model_source.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze::cli {

constexpr int kExitOk = 0, kExitInvalid = 1, kExitUsage = 2;

/// A subcommand: its name, one line of help, and how it sets itself up. `setup` adds options
/// to `cmd` and returns the function that runs it.
struct Command {
  const char* name;
  const char* help;
  std::function<std::function<int()>(CLI::App& cmd)> setup;
};
const std::vector<Command>& commands();

/// Diagnostics and the source texts they quote, printed to stderr.
struct Session {
  Diagnostics diags;
  SourceTexts sources;
  void flush(std::ostream& err = std::cerr, bool warnings = true);
};

/// Options shared by commands that compile a plan.
struct PlanArgs {
  std::string rules, model, config, family, section, optimizer = "adamw";
  std::vector<std::string> sets;
  std::vector<std::string> assume;  // "val_loss: plateau at epoch 3"
  std::string metrics;              // a recorded metric history
  std::optional<int64_t> epochs, steps, steps_per_epoch;
  bool strict = false;
  void add_to(CLI::App& cmd, bool with_rules = true);
};

std::optional<Strategy> load_rules(Session& s, const std::string& spec, const std::string& section);
std::optional<Inventory> load_inventory(Session& s, const std::string& spec,
                                        const std::string& config = "",
                                        const std::string& family = "");
std::optional<Plan> compile_plan(Session& s, const PlanArgs& a, const std::string& rules_spec);

/// Takes `value` for the rest of the process, never to be freed: a command's large plan or
/// inventory once its output is written. The process ends right after, and freeing a
/// 100k-tensor model piece by piece costs more than printing its plan (docs/PERFORMANCE.md).
std::vector<std::shared_ptr<void>>& kept_until_exit();
template <class T>
void keep_until_exit(T& value) {
  kept_until_exit().push_back(std::make_shared<T>(std::move(value)));
}

/// Makes `.pt` models load through the torch adapter (dlopen on first use).
void install_torchscript_loader();

/// The end of the printed timeline: --epochs / --steps, else a little past the last trigger.
Time horizon_for(const Plan& plan, const PlanArgs& a);

}  // namespace layerfreeze::cli
