// layerfreeze presets : the shipped presets, their parameters and defaults; `schema`: the
// JSON Schema of the DSL.
#include "cli/cli_common.hpp"
#include "core/embedded_rules.hpp"

namespace layerfreeze::cli {

std::function<int()> setup_presets(CLI::App& cmd) {
  auto name = std::make_shared<std::string>();
  cmd.add_option("NAME", *name, "show this preset's file (with its documentation header)");
  return [name] {
    if (!name->empty()) {
      const char* text = embedded_rule_file(*name + ".yaml");
      if (!text || *name == "discovery") {
        std::cerr << "error: no preset '" << *name << "'" << did_you_mean(*name, preset_names())
                  << " [unknown-preset]\n";
        return kExitInvalid;
      }
      std::cout << text;
      return kExitOk;
    }
    for (const auto& n : preset_names()) {
      Session s;
      auto st = load_rules(s, "preset:" + n, "");
      if (!st) {
        s.flush();
        return kExitInvalid;
      }
      std::cout << "preset:" << n << "\n  " << st->description() << "\n";
      for (const auto& p : st->params()) {
        std::cout << "  " << p.name << " (" << p.type << ", ";
        if (p.required)
          std::cout << "required";
        else
          std::cout << "default " << p.default_value;
        std::cout << ")";
        if (!p.doc.empty()) std::cout << " — " << p.doc;
        std::cout << "\n";
      }
    }
    return kExitOk;
  };
}

std::function<int()> setup_schema(CLI::App&) {
  return [] {
    const char* text = embedded_rule_file("schema.json");
    if (!text) return kExitInvalid;
    std::cout << text;
    return kExitOk;
  };
}

}  // namespace layerfreeze::cli
