// layerfreeze check LOCK [--model MODEL] : compiles a locked strategy again (plan --lock) and
// exits 1, printing what differs, when the plan no longer matches the lock.
#include "cli/cli_common.hpp"
#include "cli/git_source.hpp"
#include "cli/plan_lock.hpp"
#include "core/file_access.hpp"
#include "sources/json_file.hpp"

namespace layerfreeze::cli {

namespace {
constexpr uint64_t kMaxLockBytes = uint64_t{64} << 20;  // a lock of a 100k-tensor plan is ~2 MB
}  // namespace

std::function<int()> setup_check(CLI::App& cmd) {
  struct Args {
    std::string lock, model;
  };
  auto a = std::make_shared<Args>();
  cmd.add_option("LOCK", a->lock, "a lock written by `plan --lock`")->required();
  cmd.add_option("--model,-m", a->model, "the model to check against (default: the lock's)");
  return [a] {
    // A lock comes from a pull request: read as any untrusted file, checked against its
    // schema, and what it names must lie below the folders around it (docs/SECURITY.md).
    Session ls;
    FileRead how;
    how.what = "lock";
    how.max_bytes = kMaxLockBytes;
    auto text = read_file(a->lock, a->lock, how, ls.diags);
    std::optional<nlohmann::json> locked;
    if (text) locked = parse_json_text(*text, a->lock, "the lock", ls.diags);
    std::string spec;
    std::optional<PlanArgs> args;
    if (locked) args = args_of_lock(*locked, a->lock, spec, ls.diags);
    if (args) {
      const auto folders = allowed_folders(a->lock);
      FileRead named;
      named.folders = &folders;
      named.outside_code = "lock-outside";
      named.outside_notes = {"a lock may name only files below the folders around it"};
      named.at = {a->lock, 0, 0};
      const bool path_spec = spec.rfind("preset:", 0) != 0 && !is_git_spec(spec);
      named.what = "strategy";
      bool ok = !path_spec || check_inside(spec, spec, named, ls.diags);
      named.what = "model";
      if (a->model.empty() && args->model.rfind("builtin:", 0) != 0)
        ok = check_inside(args->model, args->model, named, ls.diags) && ok;
      if (!ok) args.reset();
    }
    if (!args) {
      ls.flush();
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
    now["model"]["source"] = (*locked)["model"]["source"];
    LockCheck c;
    try {
      c = compare_locks(*locked, now, &plan->inventory());
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
