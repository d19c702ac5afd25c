// libFuzzer target: arbitrary bytes as a lock (`layerfreeze check LOCK`). A lock comes from a
// pull request: it is parsed, checked against its schema, and — when it passes — compared with a
// real plan's lock, as `check` does. Any input must end in diagnostics or a comparison, never in
// a crash, a hang or an exception (docs/SECURITY.md).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cli/plan_lock.hpp"
#include "layerfreeze/model_source.hpp"
#include "sources/json_file.hpp"

using namespace layerfreeze;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json now = [] {
    Diagnostics d;
    auto strategy = Strategy::load("preset:gradual_unfreeze", d);
    PlanOptions o;
    o.sets = {"total_epochs=4"};
    auto plan = compile(*strategy, *builtin_model("gpt2"), o, d);
    if (!plan) std::abort();
    cli::PlanArgs a;
    a.model = "builtin:gpt2";
    a.sets = o.sets;
    return cli::lock_json(a, "preset:gradual_unfreeze", *plan, plan->report(), "digest");
  }();
  static const Inventory names = *builtin_model("gpt2");
  const std::string text(reinterpret_cast<const char*>(data), size);
  Diagnostics diags;
  auto locked = parse_json_text(text, "fuzz.lock", "the lock", diags);
  if (!locked) return 0;
  std::string spec;
  if (!cli::args_of_lock(*locked, "fuzz.lock", spec, diags)) {
    (void)format_diagnostics(diags);
    return 0;
  }
  // A lock that passed its schema is safe to compare: no exception may escape.
  auto c = cli::compare_locks(*locked, now, &names);
  (void)c.differences.size();
  return 0;
}
