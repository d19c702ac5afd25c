// libFuzzer target: arbitrary bytes as a finetuning-scheduler schedule (`layerfreeze import
// fts`), with and without a model. What the importer writes must be a rules file layerfreeze
// reads back: a schedule that imports into rules that do not parse is a bug (it would print
// "internal error"), and the target stops on it.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "import/fts_schedule.hpp"
#include "layerfreeze/model_source.hpp"
#include "layerfreeze/plan.hpp"

using namespace layerfreeze;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Inventory gpt2 = *builtin_model("gpt2");
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const Inventory* model : {static_cast<const Inventory*>(nullptr), &gpt2}) {
    Diagnostics diags;
    auto imported = import_fts_schedule(text, "schedule.yaml", model, diags);
    if (!imported) continue;
    Diagnostics check;
    if (!Strategy::from_yaml(imported->rules_yaml, "imported.yaml", check)) {
      std::fputs(format_diagnostics(check).c_str(), stderr);
      std::fputs(imported->rules_yaml.c_str(), stderr);
      std::abort();
    }
  }
  return 0;
}
