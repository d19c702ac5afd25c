#include "cli/plan_lock.hpp"

#include <fstream>
#include <sstream>

#include "analysis/plan_diff.hpp"
#include "core/format.hpp"
#include "core/json_text.hpp"
#include "core/safe_text.hpp"
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

namespace {

// The schema of a layerfreeze.lock/2 (what lock_json writes): every problem is one error.
class LockSchema {
 public:
  LockSchema(const std::string& file, Diagnostics& diags) : file_(file), diags_(diags) {}

  void check(const json& lock) {
    const json* s = object(lock, "strategy", "");
    if (s) {
      text(*s, "source", "strategy.", /*nonempty=*/true);
      text(*s, "section", "strategy.");
      text(*s, "text_digest", "strategy.");
      text(*s, "name", "strategy.");
      if (const json* sets = field(*s, "sets", "strategy.")) {
        if (!sets->is_array())
          wrong("strategy.sets", "a list of KEY=VALUE strings", *sets);
        else
          for (size_t i = 0; i < sets->size(); ++i)
            if (!(*sets)[i].is_string())
              wrong("strategy.sets[" + std::to_string(i) + "]", "a string", (*sets)[i]);
      }
      count(*s, "steps_per_epoch", "strategy.", 1, /*nullable=*/true);
    }
    text(lock, "layerfreeze", "");
    text(lock, "params", "");
    text(lock, "plan_fingerprint", "");
    if (const json* m = object(lock, "model", "")) {
      text(*m, "source", "model.", true);
      text(*m, "fingerprint", "model.");
    }
    if (const json* o = field(lock, "optimizer", "")) {
      if (!o->is_string() || !parse_optimizer(o->get<std::string>()))
        wrong("optimizer", "one of adamw, adam, sgd, sgd-momentum", *o);
    }
    if (const json* h = object(lock, "horizon", "")) {
      count(*h, "epochs", "horizon.", 0, true);
      count(*h, "steps", "horizon.", 0, true);
    }
    object(lock, "plan", "");
    if (const json* st = field(lock, "stages", "")) {
      if (!st->is_array()) {
        wrong("stages", "a list", *st);
      } else {
        for (size_t i = 0; i < st->size(); ++i) {
          const std::string at = "stages[" + std::to_string(i) + "].";
          const json& e = (*st)[i];
          if (!e.is_object()) {
            wrong(at.substr(0, at.size() - 1), "an object", e);
            continue;
          }
          text(e, "at", at, true);
          for (const char* k :
               {"frozen_tensors", "trainable_tensors", "frozen_numel", "trainable_numel"})
            count(e, k, at, 0, false);
        }
      }
    }
  }

 private:
  const json* field(const json& parent, const char* key, const std::string& path) {
    auto it = parent.find(key);
    if (it == parent.end()) {
      diags_.error("lock-format", "the lock has no \"" + path + key + "\"", {file_, 0, 0},
                   {"`layerfreeze plan ... --lock FILE` writes every field; write it again"});
      return nullptr;
    }
    return &*it;
  }
  const json* object(const json& parent, const char* key, const std::string& path) {
    const json* v = field(parent, key, path);
    if (v && !v->is_object()) {
      wrong(path + key, "an object", *v);
      return nullptr;
    }
    return v;
  }
  void text(const json& parent, const char* key, const std::string& path, bool nonempty = false) {
    const json* v = field(parent, key, path);
    if (v && (!v->is_string() || (nonempty && v->get<std::string>().empty())))
      wrong(path + key, nonempty ? "a non-empty string" : "a string", *v);
  }
  void count(const json& parent, const char* key, const std::string& path, int64_t least,
             bool nullable) {
    const json* v = field(parent, key, path);
    if (!v || (nullable && v->is_null())) return;
    constexpr int64_t kMost = int64_t{1} << 53;  // exact in every JSON reader
    if (!v->is_number_integer() || v->get<int64_t>() < least || v->get<int64_t>() > kMost)
      wrong(path + key,
            (nullable ? "null or an integer from " : "an integer from ") + std::to_string(least) +
                " to 2^53",
            *v);
  }
  void wrong(const std::string& where, const std::string& want, const json& got) {
    diags_.error("lock-format",
                 "the lock's \"" + where + "\" must be " + want + ", not " +
                     (got.is_string() ? quoted_value(got.get<std::string>())
                                      : quoted_value(json_text(got), 60, false)),
                 {file_, 0, 0});
  }

  std::string file_;
  Diagnostics& diags_;
};

}  // namespace

std::optional<PlanArgs> args_of_lock(const json& lock, const std::string& file,
                                     std::string& rules_spec, Diagnostics& diags) {
  if (!lock.is_object()) {
    diags.error("lock-format", "not a layerfreeze lock (a JSON object is expected)", {file, 0, 0});
    return std::nullopt;
  }
  auto format = lock.find("format");
  if (format != lock.end() && *format == "layerfreeze.lock/1") {
    // Its plan fingerprint covered frozen states only (not learning rates, policies or
    // parameters): checking against it could say "ok" wrongly, so it is refused.
    std::string version = "(unknown)";
    if (auto v = lock.find("layerfreeze"); v != lock.end() && v->is_string())
      version = quoted_value(v->get<std::string>(), 32, /*quotes=*/false);
    std::string error = "this lock was written by layerfreeze " + version +
                        " in format layerfreeze.lock/1, whose plan fingerprint did not cover "
                        "learning rates, policies or strategy parameters; write it again with "
                        "today's layerfreeze";
    try {  // the command that writes it again, when the old lock says enough for it
      std::string spec;
      error += ": " + relock_command(read_args(lock, spec), spec);
    } catch (const json::exception&) {}
    diags.error("lock-old", error, {file, 0, 0});
    return std::nullopt;
  }
  if (format == lock.end() || *format != "layerfreeze.lock/2") {
    diags.error(
        "lock-format",
        "not a layerfreeze lock (format " +
            (format == lock.end() ? std::string("missing") : quoted_value(json_text(*format))) +
            ")",
        {file, 0, 0}, {"`layerfreeze plan ... --lock FILE` writes layerfreeze.lock/2"});
    return std::nullopt;
  }
  const size_t before = diags.count(Severity::kError);
  LockSchema(file, diags).check(lock);
  if (diags.count(Severity::kError) > before) return std::nullopt;
  return read_args(lock, rules_spec);
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
