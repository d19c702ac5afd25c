// layerfreeze import fts SCHEDULE.yaml [--model M] [-o OUT]: a peer's schedule as a rules file
// (docs/PEERS.md). The rules go to stdout (or OUT), what is not imported to stderr as notes; the
// output is parsed back (and compiled against --model) before it is written.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/cli_common.hpp"
#include "import/fts_schedule.hpp"

namespace layerfreeze::cli {

namespace {

constexpr std::uintmax_t kMaxScheduleBytes = 4u << 20;

std::optional<std::string> read_schedule(Session& s, const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || !std::filesystem::is_regular_file(path)) {
    s.diags.error("file-not-found", "cannot read schedule '" + path + "'", {path, 0, 0});
    return std::nullopt;
  }
  if (size > kMaxScheduleBytes) {
    s.diags.error("file-too-large",
                  "schedule '" + path + "' is " + std::to_string(size) + " bytes; the limit is " +
                      std::to_string(kMaxScheduleBytes),
                  {path, 0, 0});
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  s.sources.add(path, ss.str());
  return ss.str();
}

}  // namespace

std::function<int()> setup_import(CLI::App& cmd) {
  struct Args {
    std::string from, schedule, model, out;
    double base_max_lr = kFtsBaseMaxLr;
  };
  auto a = std::make_shared<Args>();
  cmd.add_option("FROM", a->from, "the peer whose schedule it is: fts (finetuning-scheduler)")
      ->required()
      ->check(CLI::IsMember({"fts"}));
  cmd.add_option("SCHEDULE", a->schedule, "the peer's schedule file")->required();
  cmd.add_option("--model,-m", a->model,
                 "the model the schedule is for: tells names from regexes, as FTS does, and "
                 "checks that every phase selects something");
  cmd.add_option("--output,-o", a->out, "write the rules here instead of stdout");
  cmd.add_option("--base-max-lr", a->base_max_lr,
                 "the lr FTS gives a phase without one (FinetuningScheduler's base_max_lr)")
      ->check(CLI::PositiveNumber);
  return [a] {
    Session s;
    std::optional<Inventory> model;
    if (!a->model.empty() && !(model = load_inventory(s, a->model))) {
      s.flush();
      return kExitInvalid;
    }
    auto text = read_schedule(s, a->schedule);
    std::optional<FtsImport> imported;
    if (text)
      imported = import_fts_schedule(*text, a->schedule, model ? &*model : nullptr, s.diags,
                                     a->base_max_lr);
    if (!imported) {
      s.flush();
      return kExitInvalid;
    }
    // The output must be a strategy we accept (and, with a model, compile).
    Diagnostics check;
    auto strategy = Strategy::from_yaml(imported->rules_yaml, "imported.yaml", check);
    if (strategy && model) {
      PlanOptions o;
      o.strict = true;  // a phase that thaws nothing is a broken import
      compile(*strategy, *model, o, check);
    }
    if (!strategy || check.has_errors()) {
      std::cerr << "layerfreeze: internal error: the imported rules do not compile:\n"
                << format_diagnostics(check) << imported->rules_yaml;
      return kExitInvalid;
    }
    if (a->out.empty()) {
      std::cout << imported->rules_yaml;
    } else {
      std::ofstream(a->out) << imported->rules_yaml;
      std::cerr << "wrote " << a->out << " (" << imported->phases << " phases)\n";
    }
    for (const auto& n : imported->notes) std::cerr << "note: " << n << "\n";
    s.flush();
    return kExitOk;
  };
}

}  // namespace layerfreeze::cli
