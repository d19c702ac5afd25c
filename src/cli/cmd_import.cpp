// layerfreeze import fts SCHEDULE.yaml [--model M] [-o OUT]: a peer's schedule as a rules file
// (docs/PEERS.md). The rules go to stdout (or OUT), what is not imported to stderr as notes; the
// output is parsed back (and compiled against --model) before it is written.
#include "cli/cli_common.hpp"
#include "core/file_access.hpp"
#include "import/fts_schedule.hpp"

namespace layerfreeze::cli {

namespace {

constexpr std::uintmax_t kMaxScheduleBytes = 4u << 20;

std::optional<std::string> read_schedule(Session& s, const std::string& path) {
  FileRead how;
  how.what = "schedule";
  how.max_bytes = kMaxScheduleBytes;
  auto text = read_file(path, path, how, s.diags);
  if (text) s.sources.add(path, *text);
  return text;
}

}  // namespace

std::function<int()> setup_import(CLI::App& cmd) {
  struct Args {
    std::string from, schedule, model, out, lightning_config;
    std::optional<double> base_max_lr, min_delta;
    std::optional<std::string> monitor, mode;
    std::optional<int64_t> patience;
    bool epoch_transitions_only = false;
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
  cmd.add_option("--lightning-config", a->lightning_config,
                 "a Lightning CLI config: FinetuningScheduler's and FTSEarlyStopping's settings "
                 "(trainer.callbacks)");
  cmd.add_option("--monitor", a->monitor,
                 "FTSEarlyStopping's monitor (default val_loss, as FTS adds it)");
  cmd.add_option("--mode", a->mode, "FTSEarlyStopping's mode: min or max")
      ->check(CLI::IsMember({"min", "max"}));
  cmd.add_option("--patience", a->patience, "FTSEarlyStopping's patience (default 3)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd.add_option("--min-delta", a->min_delta, "FTSEarlyStopping's min_delta (default 0)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--epoch-transitions-only", a->epoch_transitions_only,
               "FTS's epoch_transitions_only: phases end at max_transition_epoch alone");
  return [a] {
    Session s;
    FtsImportOptions options;
    if (!a->lightning_config.empty()) {
      FileRead how;
      how.what = "Lightning config";
      how.max_bytes = kMaxScheduleBytes;
      auto cfg = read_file(a->lightning_config, a->lightning_config, how, s.diags);
      std::optional<FtsImportOptions> read;
      if (cfg) {
        s.sources.add(a->lightning_config, *cfg);
        read = read_lightning_config(*cfg, a->lightning_config, options, s.diags);
      }
      if (!read) {
        s.flush();
        return kExitInvalid;
      }
      options = *read;
    }
    // The command line over the config.
    if (a->base_max_lr) options.base_max_lr = *a->base_max_lr;
    if (a->epoch_transitions_only) options.early_stopping.reset();
    const bool es_flags = a->monitor || a->mode || a->patience || a->min_delta;
    if (es_flags && !options.early_stopping) {
      std::cerr << "error: --monitor, --mode, --patience and --min-delta configure "
                   "FTSEarlyStopping, which epoch_transitions_only leaves out [usage]\n";
      return kExitUsage;
    }
    if (options.early_stopping) {
      FtsEarlyStopping& es = *options.early_stopping;
      if (a->monitor) es.monitor = *a->monitor;
      if (a->mode) es.maximize = *a->mode == "max";
      if (a->patience) es.patience = *a->patience;
      if (a->min_delta) es.min_delta = *a->min_delta;
    }
    std::optional<Inventory> model;
    if (!a->model.empty() && !(model = load_inventory(s, a->model))) {
      s.flush();
      return kExitInvalid;
    }
    auto text = read_schedule(s, a->schedule);
    std::optional<FtsImport> imported;
    if (text)
      imported =
          import_fts_schedule(*text, a->schedule, model ? &*model : nullptr, s.diags, options);
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
      Diagnostics on_model;
      if (!compile(*strategy, *model, o, on_model)) {
        // Not a bug of the importer: the schedule does not fit this model (an entry that selects
        // nothing, a tied tensor thawed through one of its names).
        std::cerr << a->schedule << ": error: the imported schedule does not hold on " << a->model
                  << " [fts-schedule]\n"
                  << format_diagnostics(on_model);
        return kExitInvalid;
      }
    }
    if (!strategy || check.has_errors()) {
      // The rules' first lines are enough to see what went wrong; a schedule of thousands of
      // phases is not printed whole.
      std::string head;
      size_t lines = 0;
      for (size_t i = 0; i < imported->rules_yaml.size() && lines < 40; ++i)
        if ((head += imported->rules_yaml[i]).back() == '\n') ++lines;
      std::cerr << "layerfreeze: internal error: the imported rules do not compile:\n"
                << format_diagnostics(check) << head
                << (head.size() < imported->rules_yaml.size() ? "…\n" : "");
      return kExitInvalid;
    }
    if (a->out.empty()) {
      std::cout << imported->rules_yaml;
    } else {
      std::string error;
      if (!write_file_atomic(a->out, imported->rules_yaml, &error)) {
        std::cerr << "error: " << error << "\n";
        return kExitInvalid;
      }
      std::cerr << "wrote " << a->out << " (" << imported->phases << " phases)\n";
    }
    for (const auto& n : imported->notes) std::cerr << "note: " << n << "\n";
    s.flush();
    return kExitOk;
  };
}

}  // namespace layerfreeze::cli
