// libFuzzer target: rules text → parser → validator → compiler, against built-in GPT-2 and
// T5 inventories. Any input must give a plan or diagnostics — never a crash, a hang, a leak or
// an exception out of the library.
#include <cstdint>
#include <string>

#include "core/compiler.hpp"
#include "core/rules_parser.hpp"
#include "layerfreeze/model_source.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const layerfreeze::Inventory gpt2 = *layerfreeze::builtin_model("gpt2");
  static const layerfreeze::Inventory t5 = *layerfreeze::builtin_model("t5-small");
  std::string text(reinterpret_cast<const char*>(data), size);
  layerfreeze::Diagnostics diags;
  layerfreeze::SourceTexts sources;
  layerfreeze::RulesLoader loader(diags, sources);
  auto s = loader.load_text(text, "fuzz.yaml");
  if (!s) {
    (void)layerfreeze::format_diagnostics(diags, &sources);
    return 0;
  }
  layerfreeze::PlanOptions o;
  o.steps_per_epoch = 10;
  for (const auto* inv : {&gpt2, &t5}) {
    auto plan = layerfreeze::compile(*s, *inv, o, diags);
    if (plan) {
      (void)plan->timeline({4, 40}, 200);
      (void)plan->frozen_at({3, 35});
    }
  }
  (void)layerfreeze::format_diagnostics(diags, &sources);
  return 0;
}
