// layerfreeze inspect MODEL [--format text|json] : inventory and discovery.
#include "cli/cli_common.hpp"
#include "core/layer_discovery.hpp"
#include "print/inventory_printer.hpp"

namespace layerfreeze::cli {

std::function<int()> setup_inspect(CLI::App& cmd) {
  struct Args {
    std::string model, config, family, format = "text", rules, section;
    bool all = false;
  };
  auto a = std::make_shared<Args>();
  // Positional, or --model as `plan` takes it.
  cmd.add_option("MODEL,--model,-m", a->model,
                 "model: .pt, .safetensors, .safetensors.index.json, .json manifest, config.json, "
                 "a checkpoint "
                 "folder, builtin:NAME")
      ->required();
  cmd.add_option("--config", a->config,
                 "the model's config.json, when it is not beside the model file");
  cmd.add_option(
      "--family", a->family,
      "a model family file (docs/FAMILIES.md) for the config, instead of the shipped ones");
  cmd.add_option("--format,-f", a->format, "text, or json (a manifest that --model reads back)")
      ->check(CLI::IsMember({"text", "json"}));
  cmd.add_option("--rules", a->rules, "apply this rules file's discovery overrides");
  cmd.add_option("--section", a->section, "dotted key of the strategy inside a larger YAML");
  cmd.add_flag("--all", a->all, "list every parameter");
  return [a] {
    Session s;
    auto inv = load_inventory(s, a->model, a->config, a->family);
    std::optional<Strategy> strategy;
    if (!a->rules.empty()) strategy = load_rules(s, a->rules, a->section);
    if (inv && strategy)
      strategy->discover(*inv, s.diags);
    else if (inv && a->rules.empty())
      discover_layers(*inv, DiscoveryPatterns::shipped(), s.diags);
    bool bad = s.diags.has_errors() || !inv;
    s.flush();
    if (bad) return kExitInvalid;
    std::cout << (a->format == "json" ? inventory_json(*inv) : inventory_text(*inv, a->all));
    keep_until_exit(inv);
    return kExitOk;
  };
}

}  // namespace layerfreeze::cli
