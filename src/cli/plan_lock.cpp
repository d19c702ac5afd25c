#include "cli/plan_lock.hpp"

#include <fstream>
#include <sstream>

#include "analysis/plan_diff.hpp"
#include "core/format.hpp"
#include "core/json_text.hpp"
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
               const PlanReport& report, const std::string& text_digest) {
  json stages = json::array();
  for (const auto& st : report.stages())
    stages.push_back({{"at", st.when},
                      {"frozen_tensors", st.frozen_tensors},
                      {"trainable_tensors", st.trainable_tensors},
                      {"frozen_numel", st.frozen_numel},
                      {"trainable_numel", st.trainable_numel}});
  return {{"format", "layerfreeze.lock/2"},
          {"layerfreeze", LAYERFREEZE_VERSION_TEXT},
          {"strategy",
           {{"source", rules_spec},
            {"section", a.section},
            {"sets", a.sets},
            {"steps_per_epoch", opt(a.steps_per_epoch)},
            {"text_digest", text_digest},
            {"name", plan.name()}}},
          {"params", plan.parameters_text()},
          {"model", {{"source", a.model}, {"fingerprint", plan.inventory().fingerprint()}}},
          {"optimizer", a.optimizer},
          {"horizon", {{"epochs", opt(a.epochs)}, {"steps", opt(a.steps)}}},
          {"plan_fingerprint", plan.fingerprint()},
          {"plan", json::parse(plan.canonical())},
          {"stages", stages}};
}

namespace {

PlanArgs read_args(const json& lock, std::string& rules_spec) {
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
}

// The `plan ... --lock FILE` command that writes `lock` again, for a message.
std::string relock_command(const PlanArgs& a, const std::string& spec) {
  std::string c = "layerfreeze plan " + spec + " --model " + a.model;
  if (!a.section.empty()) c += " --section " + a.section;
  for (const auto& s : a.sets) c += " --set '" + s + "'";
  if (a.steps_per_epoch) c += " --steps-per-epoch " + std::to_string(*a.steps_per_epoch);
  if (a.epochs) c += " --epochs " + std::to_string(*a.epochs);
  if (a.steps) c += " --steps " + std::to_string(*a.steps);
  return c + " --optimizer " + a.optimizer + " --lock FILE";
}

}  // namespace

std::optional<PlanArgs> args_of_lock(const json& lock, std::string& rules_spec,
                                     std::string& error) {
  try {
    const json& format = lock.at("format");
    if (format == "layerfreeze.lock/1") {
      // Its plan fingerprint covered frozen states only (not learning rates, policies or
      // parameters): checking against it could say "ok" wrongly, so it is refused.
      error = "this lock was written by layerfreeze " + lock.value("layerfreeze", "(unknown)") +
              " in format layerfreeze.lock/1, whose plan fingerprint did not cover learning "
              "rates, policies or strategy parameters; write it again with today's layerfreeze";
      try {
        std::string spec;
        PlanArgs a = read_args(lock, spec);
        error += ": " + relock_command(a, spec);
      } catch (const json::exception&) {}
      return std::nullopt;
    }
    if (format != "layerfreeze.lock/2") {
      error = "not a layerfreeze lock (format " + json_text(format) + ")";
      return std::nullopt;
    }
    if (!lock.at("plan").is_object()) {
      error = "a lock's \"plan\" is the canonical plan, a JSON object";
      return std::nullopt;
    }
    return read_args(lock, rules_spec);
  } catch (const json::exception& e) {
    error = std::string("a lock file needs every field `plan --lock` writes: ") + e.what();
    return std::nullopt;
  }
}

LockCheck compare_locks(const json& locked, const json& now, const Inventory* names) {
  LockCheck c;
  std::ostringstream o;
  // The canonical plans decide; the per-stage counts below help a reader see the size of it.
  const PlanDiff d =
      diff_canonical(locked.at("plan"), now.at("plan"), names, "the lock", "this compile");
  if (d.differs())
    o << "plan: fingerprint " << locked["plan_fingerprint"].get<std::string>() << " -> "
      << now["plan_fingerprint"].get<std::string>() << "\n";
  for (const auto& i : d.items) o << "  " << i.where << ": " << i.what << "\n";
  if (!d.differs() && locked.at("plan_fingerprint") != now.at("plan_fingerprint"))
    o << "plan: fingerprint " << locked["plan_fingerprint"].get<std::string>() << " -> "
      << now["plan_fingerprint"].get<std::string>()
      << " (the lock's canonical plan does not hash to its fingerprint: edited by hand?)\n";
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
  bool heading = false;
  for (const auto& at : order) {
    const json* x = before.count(at) ? before[at] : nullptr;
    const json* y = after.count(at) ? after[at] : nullptr;
    if (x && y && *x == *y) continue;
    if (!heading) o << "counts (the lock -> now):\n";
    heading = true;
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
