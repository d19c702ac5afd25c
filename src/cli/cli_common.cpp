#include "cli/cli_common.hpp"

#include "cli/git_source.hpp"
#include "core/file_access.hpp"
#include "sources/family.hpp"

#include <algorithm>
#include <fstream>

namespace layerfreeze::cli {

void Session::flush(std::ostream& err, bool warnings) {
  for (const auto& d : diags.items()) {
    if (d.severity == Severity::kWarning && !warnings) continue;
    err << format_diagnostic(d, &sources);
  }
  err << format_dropped(diags);
  diags = Diagnostics();
}

void PlanArgs::add_to(CLI::App& cmd, bool with_rules) {
  if (with_rules) cmd.add_option("RULES", rules, "rules file, or preset:NAME")->required();
  cmd.add_option("--model,-m", model,
                 "model: .pt, .safetensors, .safetensors.index.json, .json manifest, config.json, "
                 "a checkpoint folder, "
                 "builtin:NAME")
      ->required();
  cmd.add_option("--config", config,
                 "the model's config.json, when it is not beside the model file");
  cmd.add_option(
      "--family", family,
      "a model family file (docs/FAMILIES.md) for the config, instead of the shipped ones");
  cmd.add_option("--set", sets,
                 "override a declared parameter: KEY=VALUE (YAML scalar or flow value)");
  cmd.add_option("--section", section,
                 "dotted key of the strategy inside a larger YAML (e.g. training.freeze)");
  cmd.add_option("--epochs", epochs, "show the timeline up to this many epochs");
  cmd.add_option("--steps", steps, "show the timeline up to this many steps");
  cmd.add_option("--steps-per-epoch", steps_per_epoch,
                 "steps in one epoch (orders epoch and step triggers)");
  cmd.add_option("--optimizer", optimizer,
                 "optimizer for memory figures: adamw, adam, sgd, sgd-momentum")
      ->check(CLI::IsMember({"adamw", "adam", "sgd", "sgd-momentum"}));
  cmd.add_option("--assume", assume,
                 "a metric stage's plateau to assume: 'METRIC: plateau at epoch N' (repeatable)");
  cmd.add_option("--metrics", metrics,
                 "a recorded metric history (EPOCH METRIC VALUE lines): the plan that run "
                 "followed");
  cmd.add_flag("--strict", strict,
               "every warning is an error (a dead selector, a model whose config disagrees with "
               "its checkpoint, ...)");
}

std::optional<Strategy> load_rules(Session& s, const std::string& spec,
                                   const std::string& section) {
  if (is_git_spec(spec)) return load_git_strategy(spec, section, s.diags, s.sources);
  return Strategy::load(spec, s.diags, section, &s.sources);
}

std::optional<Inventory> load_inventory(Session& s, const std::string& spec,
                                        const std::string& config, const std::string& family) {
  if (!family.empty()) {
    // Its text, for source lines in messages; load_model reports a file it cannot read.
    FileRead how;
    how.what = "family file";
    how.max_bytes = kMaxFamilyFileBytes;
    Diagnostics quiet;
    if (auto text = read_file(family, family, how, quiet)) s.sources.add(family, *text);
  }
  return load_model(spec, s.diags, config, family);
}

std::optional<Plan> compile_plan(Session& s, const PlanArgs& a, const std::string& rules_spec) {
  auto strategy = load_rules(s, rules_spec, a.section);
  auto inv = load_inventory(s, a.model, a.config, a.family);
  if (!strategy || !inv) return std::nullopt;
  PlanOptions o;
  o.sets = a.sets;
  o.steps_per_epoch = a.steps_per_epoch;
  o.strict = a.strict;
  auto plan = compile(*strategy, std::move(*inv), o, s.diags);
  if (!plan || (a.assume.empty() && a.metrics.empty())) return plan;
  // Where the metric stages fire: as assumed, or as a recorded run's metrics decided.
  if (!a.metrics.empty()) {
    FileRead how;
    how.what = "metric history";
    how.max_bytes = size_t{64} << 20;
    auto text = read_file(a.metrics, a.metrics, how, s.diags);
    if (!text) return std::nullopt;
    s.sources.add(a.metrics, *text);
    plan = plan->replaying(*text, a.metrics, s.diags);
    if (!plan) return std::nullopt;
  }
  if (!a.assume.empty()) {
    if (!a.metrics.empty()) {
      s.diags.error("usage", "--assume and --metrics both say where metric stages fire: pass one",
                    {});
      return std::nullopt;
    }
    plan = plan->assuming(a.assume, s.diags);
  }
  return plan;
}

std::vector<std::shared_ptr<void>>& kept_until_exit() {
  // Reachable from a static until the end, so leak checkers do not count it as lost.
  static auto* kept = new std::vector<std::shared_ptr<void>>;
  return *kept;
}

Time horizon_for(const Plan& plan, const PlanArgs& a) { return plan.horizon(a.epochs, a.steps); }

}  // namespace layerfreeze::cli
