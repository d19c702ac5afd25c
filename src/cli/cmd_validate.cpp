// layerfreeze validate RULES... : parse and check; every error at once, exit 1 on any.
#include "cli/cli_common.hpp"

namespace layerfreeze::cli {

std::function<int()> setup_validate(CLI::App& cmd) {
  struct Args {
    std::vector<std::string> files;
    std::string section, model;
    std::vector<std::string> sets;
    bool strict = false;
  };
  auto a = std::make_shared<Args>();
  cmd.add_option("RULES", a->files, "rules files, or preset:NAME")->required();
  cmd.add_option("--section", a->section, "dotted key of the strategy inside a larger YAML");
  cmd.add_option("--set", a->sets, "check parameter overrides too: KEY=VALUE");
  cmd.add_option("--model,-m", a->model, "also compile against this model");
  cmd.add_flag("--strict", a->strict, "warnings are errors (with --model)");
  return [a] {
    bool failed = false;
    for (const auto& f : a->files) {
      Session s;
      auto strategy = load_rules(s, f, a->section);
      if (strategy) {
        bool bound = strategy->check_parameters(a->sets, s.diags,
                                                /*allow_missing=*/a->model.empty());
        bound = strategy->check_files(s.diags) && bound;
        if (bound && !a->model.empty()) {
          if (auto inv = load_inventory(s, a->model)) {
            PlanOptions co;
            co.sets = a->sets;
            co.strict = a->strict;
            bound = compile(*strategy, std::move(*inv), co, s.diags).has_value();
          } else {
            bound = false;
          }
        }
        if (bound) {
          // "ok" says what was checked; a selector that selects nothing of the model is named
          // here too, not only among the warnings on stderr.
          size_t dead = 0, warnings = 0;
          for (const auto& d : s.diags.items()) {
            warnings += d.severity == Severity::kWarning;
            dead += d.severity == Severity::kWarning && d.code == "no-match";
          }
          std::cout << "ok: " << f << " (" << strategy->name() << "): " << strategy->rule_count()
                    << " rules, " << strategy->stage_count() << " stages, "
                    << strategy->param_names().size() << " parameters";
          if (dead)
            std::cout << "; " << dead << (dead == 1 ? " selector selects" : " selectors select")
                      << " nothing of " << a->model;
          if (warnings)
            std::cout << " (" << warnings << " warning" << (warnings == 1 ? "" : "s") << ")";
          std::cout << "\n";
        }
      }
      if (s.diags.has_errors()) failed = true;
      s.flush();
    }
    return failed ? kExitInvalid : kExitOk;
  };
}

}  // namespace layerfreeze::cli
