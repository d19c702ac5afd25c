// The table of subcommands (docs/CLI.md).
#include "cli/cli_common.hpp"

namespace layerfreeze::cli {

std::function<int()> setup_validate(CLI::App& cmd);
std::function<int()> setup_plan(CLI::App& cmd);
std::function<int()> setup_explain(CLI::App& cmd);
std::function<int()> setup_diff(CLI::App& cmd);
std::function<int()> setup_check(CLI::App& cmd);
std::function<int()> setup_inspect(CLI::App& cmd);
std::function<int()> setup_presets(CLI::App& cmd);
std::function<int()> setup_schema(CLI::App& cmd);
std::function<int()> setup_launch(CLI::App& cmd);
std::function<int()> setup_import(CLI::App& cmd);

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"validate", "parse and check rules files; file:line:col errors, exit 1 on any",
       setup_validate},
      {"plan", "compile rules against a model and print the plan (text, json, markdown, svg, html)",
       setup_plan},
      {"explain", "why one parameter is frozen or trainable at a time", setup_explain},
      {"diff", "where two strategies disagree on one model, over time (REV:PATH reads git)",
       setup_diff},
      {"check", "compile a locked strategy (plan --lock) again; exit 1 if its plan changed",
       setup_check},
      {"inspect", "a model's inventory: discovered layers, roles, ties", setup_inspect},
      {"presets", "the shipped presets and their parameters", setup_presets},
      {"schema", "the JSON Schema of the rules DSL, for editors", setup_schema},
      {"import", "a peer's schedule as a rules file (fts: a finetuning-scheduler schedule)",
       setup_import},
      {"launch",
       "start the ranks of a data-parallel job on this machine (RANK, WORLD_SIZE, MASTER_*)",
       setup_launch},
  };
  return table;
}

}  // namespace layerfreeze::cli
