// libFuzzer target: what metric-triggered stages read from outside (docs/RULES.md, "Metric
// triggers") — a recorded metric history (`plan --metrics FILE`), an executor state's trigger
// text (a checkpoint's metadata, restored by Executor::restore) and an `--assume`. The first byte
// picks which; each is then run through what the plan does with it: a history replayed and the
// plan placed, a state restored and continued, an assumption placed. Any input must end in
// diagnostics or a plan, never in a crash, a hang or an exception.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "api/plan_access.hpp"
#include "core/metric_triggers.hpp"
#include "core/plan.hpp"
#include "layerfreeze/model_source.hpp"

using namespace layerfreeze;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Plan plan = [] {
    Diagnostics d;
    auto strategy = Strategy::from_yaml(
        "layerfreeze: 1\nrules:\n  - freeze: all\n  - unfreeze: head\nstages:\n"
        "  - at: {plateau: val_loss, patience: 2, not_after: 6}\n"
        "    rules: [{unfreeze: {layers: \"-2:\"}}]\n"
        "  - at: {plateau: val_loss, patience: 1, min_delta: 0.01}\n    rules: [{unfreeze: all}]\n"
        "  - progressive: {unfreeze: layers, every: {plateau: acc, mode: max, not_after: 3}}\n",
        "fuzz.yaml", d);
    if (!strategy) std::abort();
    auto p = compile(*strategy, *builtin_model("gpt2"), {}, d);
    if (!p) std::abort();
    return *p;
  }();
  const CompiledPlan& compiled = PlanAccess::compiled(plan);
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  Diagnostics diags;
  switch (data[0] % 3) {
    case 0: {
      auto p = plan.replaying(text, "history.txt", diags);
      if (p) (void)p->change_points(Time{40, -1}).size();
      break;
    }
    case 1: {
      TriggerMonitor m(compiled.watches);
      if (!m.restore(text).empty()) break;
      // A state that restores is one the monitor can continue and place.
      m.report("val_loss", 0.5);
      m.report("acc", 0.5);
      for (int64_t e = 0; e < 50; ++e) m.boundary(m.last_boundary() + 1);
      CompiledPlan placed = compiled.placed(m.fired());
      (void)placed.frozen_at({60, 0}).count();
      if (TriggerMonitor(compiled.watches).restore(m.to_string()) != "") std::abort();
      break;
    }
    default: {
      auto p = plan.assuming({text}, diags);
      if (p) (void)p->change_points(Time{40, -1}).size();
      break;
    }
  }
  (void)format_diagnostics(diags);
  return 0;
}
