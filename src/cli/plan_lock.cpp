#include "cli/plan_lock.hpp"

#include <fstream>
#include <sstream>

#include "print/format.hpp"
#include "print/plan_printer.hpp"

namespace layerfreeze::cli {

namespace {

using nlohmann::json;

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

json lock_json(const PlanArgs& a, const std::string& rules_spec, const Plan& plan,
               const PlanSummary& sum, const std::string& text_digest) {
  const CompiledPlan& cp = plan.compiled();
  json stages = json::array();
  for (const auto& st : sum.stages)
    stages.push_back({{"at", time_text(st.point.at, cp.uses_steps)},
                      {"frozen_tensors", st.frozen_tensors},
                      {"trainable_tensors", st.trainable_tensors},
                      {"frozen_numel", st.frozen_numel},
                      {"trainable_numel", st.trainable_numel}});
  return {{"format", "layerfreeze.lock/1"},
          {"layerfreeze", LAYERFREEZE_VERSION_TEXT},
          {"strategy",
           {{"source", rules_spec},
            {"section", a.section},
            {"sets", a.sets},
            {"steps_per_epoch", opt(a.steps_per_epoch)},
            {"text_digest", text_digest},
            {"name", cp.name}}},
          {"params", params_text(cp)},
          {"model", {{"source", a.model}, {"fingerprint", cp.inventory->fingerprint()}}},
          {"optimizer", a.optimizer},
          {"horizon", {{"epochs", opt(a.epochs)}, {"steps", opt(a.steps)}}},
          {"plan_fingerprint", plan.fingerprint()},
          {"stages", stages}};
}

std::optional<PlanArgs> args_of_lock(const json& lock, std::string& rules_spec,
                                     std::string& error) {
  try {
    if (lock.at("format") != "layerfreeze.lock/1") {
      error = "not a layerfreeze lock (format " + lock.at("format").dump() + ")";
      return std::nullopt;
    }
    PlanArgs a;
    const json& s = lock.at("strategy");
    rules_spec = s.at("source").get<std::string>();
    a.section = s.at("section").get<std::string>();
    a.sets = s.at("sets").get<std::vector<std::string>>();
    if (!s.at("steps_per_epoch").is_null())
      a.steps_per_epoch = s.at("steps_per_epoch").get<int64_t>();
    a.model = lock.at("model").at("source").get<std::string>();
    a.optimizer = lock.at("optimizer").get<std::string>();
    const json& h = lock.at("horizon");
    if (!h.at("epochs").is_null()) a.epochs = h.at("epochs").get<int64_t>();
    if (!h.at("steps").is_null()) a.steps = h.at("steps").get<int64_t>();
    return a;
  } catch (const json::exception& e) {
    error = std::string("a lock file needs every field `plan --lock` writes: ") + e.what();
    return std::nullopt;
  }
}

LockCheck compare_locks(const json& locked, const json& now) {
  LockCheck c;
  std::ostringstream o;
  if (locked.at("model").at("fingerprint") != now.at("model").at("fingerprint"))
    o << "model: its parameters differ from the locked model's (fingerprint "
      << locked["model"]["fingerprint"].get<std::string>() << " -> "
      << now["model"]["fingerprint"].get<std::string>() << ")\n";
  if (locked.at("plan_fingerprint") != now.at("plan_fingerprint"))
    o << "plan: fingerprint " << locked["plan_fingerprint"].get<std::string>() << " -> "
      << now["plan_fingerprint"].get<std::string>() << "\n";
  if (locked.at("params") != now.at("params"))
    o << "parameters: " << locked["params"].get<std::string>() << " -> "
      << now["params"].get<std::string>() << "\n";
  // Stage by stage, by time.
  std::map<std::string, const json*> before, after;
  std::vector<std::string> order;
  for (const auto& st : locked.at("stages")) {
    before[st.at("at")] = &st;
    order.push_back(st.at("at"));
  }
  for (const auto& st : now.at("stages")) {
    after[st.at("at")] = &st;
    if (!before.count(st.at("at"))) order.push_back(st.at("at"));
  }
  auto counts = [](const json* st) {
    if (!st) return std::string("(no change point)");
    return "frozen " + std::to_string((*st)["frozen_tensors"].get<int64_t>()) +
           " tensors, trainable " + with_commas((*st)["trainable_numel"].get<int64_t>());
  };
  for (const auto& at : order) {
    const json* x = before.count(at) ? before[at] : nullptr;
    const json* y = after.count(at) ? after[at] : nullptr;
    if (x && y && *x == *y) continue;
    o << "  " << at << ": " << counts(x) << " -> " << counts(y) << "\n";
  }
  c.differences = o.str();
  c.matches = c.differences.empty();
  if (locked.at("strategy").at("text_digest") != now.at("strategy").at("text_digest"))
    c.notes += "the strategy's text changed since the lock (its plan " +
               std::string(c.matches ? "did not" : "did too") + ")\n";
  if (locked.at("layerfreeze") != now.at("layerfreeze"))
    c.notes += "locked with layerfreeze " + locked["layerfreeze"].get<std::string>() +
               ", checked with " + now["layerfreeze"].get<std::string>() + "\n";
  return c;
}

}  // namespace layerfreeze::cli
