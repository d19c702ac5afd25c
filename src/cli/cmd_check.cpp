// layerfreeze check LOCK [--model MODEL] : compiles a locked strategy again (plan --lock) and
// exits 1, printing what differs, when the plan no longer matches the lock.
#include <fstream>

#include "cli/cli_common.hpp"
#include "cli/plan_lock.hpp"

namespace layerfreeze::cli {

std::function<int()> setup_check(CLI::App& cmd) {
  struct Args {
    std::string lock, model;
  };
  auto a = std::make_shared<Args>();
  cmd.add_option("LOCK", a->lock, "a lock written by `plan --lock`")->required();
  cmd.add_option("--model,-m", a->model, "the model to check against (default: the lock's)");
  return [a] {
    std::ifstream in(a->lock, std::ios::binary);
    if (!in) {
      std::cerr << "error: cannot read '" << a->lock << "'\n";
      return kExitInvalid;
    }
    nlohmann::json locked = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    std::string spec, error;
    std::optional<PlanArgs> args;
    if (locked.is_discarded())
      error = "not JSON";
    else
      args = args_of_lock(locked, spec, error);
    if (!args) {
      std::cerr << a->lock << ": error: " << error << "\n";
      return kExitInvalid;
    }
    if (!a->model.empty()) args->model = a->model;
    Session s;
    auto plan = compile_plan(s, *args, spec);
    s.flush();  // the plan's warnings too: a lock that still matches may now be warned about
    if (!plan) return kExitInvalid;
    PlanReport sum = plan->report(*parse_optimizer(args->optimizer), horizon_for(*plan, *args));
    Session again;
    auto strategy = load_rules(again, spec, args->section);
    nlohmann::json now =
        lock_json(*args, spec, *plan, sum, strategy ? strategy->sources().digest() : "");
    now["model"]["source"] = locked["model"]["source"];
    LockCheck c;
    try {
      c = compare_locks(locked, now, &plan->inventory());
    } catch (const nlohmann::json::exception& e) {
      std::cerr << a->lock
                << ": error: a lock file needs every field `plan --lock` writes: " << e.what()
                << "\n";
      return kExitInvalid;
    }
    std::cout << (c.matches ? "ok: " : "CHANGED: ") << spec << " on " << args->model << " (lock "
              << a->lock << ")\n"
              << c.differences;
    if (!c.notes.empty()) std::cout << "note: " << c.notes;
    keep_until_exit(plan);
    keep_until_exit(sum);
    return c.matches ? kExitOk : kExitInvalid;
  };
}

}  // namespace layerfreeze::cli
