// The plan API: what a C++ trainer (or its CI) needs to load a strategy, compile it against a
// model and read, check and print the plan — without LibTorch. The CLI, the seed API, the
// executor and the distributed component compile through it; docs/API.md shows it at work.
//
//   layerfreeze::Diagnostics d;
//   auto strategy = layerfreeze::Strategy::load("preset:lp_lora", d);
//   auto model = layerfreeze::load_model("builtin:llama2-7b", d);          // model_source.hpp
//   layerfreeze::PlanOptions o;
//   o.values = {{"freeze_ratio", 0.25}};
//   auto plan = layerfreeze::compile(*strategy, *model, o, d);
//   if (!plan) { std::cerr << layerfreeze::format_diagnostics(d, &strategy->sources()); return 1; }
//   auto s = plan->state_at({0, 0});
//   std::cout << plan->text() << s.trainable_numel << "\n";
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"
#include "layerfreeze/optimizer_kind.hpp"

namespace layerfreeze {

/// A point in training time (both 0-based). -1 where a unit is unknown (no steps_per_epoch).
struct Time {
  int64_t epoch = 0;
  int64_t step = 0;
};

/// A strategy parameter's value, typed: null, bool, int, float, string or a list of strings.
using ParamValue =
    std::variant<std::nullptr_t, bool, int64_t, double, std::string, std::vector<std::string>>;

/// How to compile a strategy.
struct PlanOptions {
  std::vector<std::string> sets;                           // "KEY=VALUE" (a YAML value), in order
  std::vector<std::pair<std::string, ParamValue>> values;  // typed values, applied after `sets`
  std::string section;                     // dotted key of the strategy inside a larger YAML
  std::optional<int64_t> steps_per_epoch;  // orders epoch and step triggers
  bool strict = false;  // every warning is an error (dead selectors, model contradictions)
  /// Where an Executor reports the warnings of the plan it compiles (a selector that selects
  /// nothing, a model that contradicts its config), each as it compiles. Empty (the default):
  /// printed to stderr, each distinct warning once per process, as LibTorch's TORCH_WARN does;
  /// a handler that does nothing silences them. compile() itself never prints: its warnings are in
  /// Diagnostics and in Plan::warnings().
  std::function<void(const Diagnostic&)> on_warning;
};

struct StrategyDef;  // the parsed rules (internal)
class CompiledPlan;  // the compiled plan (internal)
struct PlanSummary;  // a plan's printed views, computed (internal)
struct PlanAccess;   // what layerfreeze's own components reach inside (src/api/plan_access.hpp)

/// A freezing strategy: a rules file, a shipped preset, or YAML text, with what it extends
/// resolved. Cheap to copy.
class Strategy {
 public:
  /// "preset:NAME" or a path; `section` selects a dotted key inside a larger YAML file.
  /// When `texts` is given, every text read is also added there, so errors can be printed with
  /// their source lines even when loading fails.
  static std::optional<Strategy> load(const std::string& source, Diagnostics& diags,
                                      const std::string& section = "",
                                      SourceTexts* texts = nullptr);
  /// YAML text from memory; `name` stands for its file in diagnostics.
  static std::optional<Strategy> from_yaml(const std::string& text, const std::string& name,
                                           Diagnostics& diags, const std::string& section = "",
                                           SourceTexts* texts = nullptr);
  /// Where rules files come from when not from the file system (a git revision's tree for
  /// `REV:PATH`): `read` returns the text of an absolute, normalised path (`shown` names it in
  /// messages) or nullopt after adding an error, and must keep to 1 MiB a file; `extends:` may
  /// reach only below `roots`; files reached by `extends:` are named with `label_prefix` first.
  struct Files {
    static constexpr size_t kMaxFileBytes = size_t{1} << 20;  // the limit for any rules file
    std::function<std::optional<std::string>(const std::string& path, const std::string& shown,
                                             Diagnostics& diags)>
        read;
    std::vector<std::string> roots;
    std::string label_prefix;
  };
  /// The strategy in the file at absolute `path`, named `label` in messages and as its origin,
  /// with everything read through `files`.
  static std::optional<Strategy> load(const std::string& path, const std::string& label,
                                      const Files& files, Diagnostics& diags,
                                      const std::string& section = "",
                                      SourceTexts* texts = nullptr);

  const std::string& name() const;
  const std::string& origin() const;  // "preset:lp_lora", a path, or the name given
  const std::string& description() const;
  /// The parameters it declares, in order.
  std::vector<std::string> param_names() const;
  /// A declared parameter as `layerfreeze presets` lists it.
  struct Param {
    std::string name;
    std::string type;           // "int", "float", "bool", "string", "strings"
    bool required = false;      // no default (and not nullable)
    std::string default_value;  // YAML text: "0.5", "null", "['a']"
    std::string doc;
  };
  std::vector<Param> params() const;
  size_t rule_count() const;   // initial rules, what it extends included
  size_t stage_count() const;  // stages as written, what it extends included
  /// Checks `sets` ("KEY=VALUE", as --set) against the declared parameters: undeclared keys,
  /// wrong types and values out of range are errors in `diags`; with `allow_missing`, required
  /// parameters may stay unset (`validate` without a model). True when none.
  bool check_parameters(const std::vector<std::string>& sets, Diagnostics& diags,
                        bool allow_missing = false) const;
  /// Checks every file the strategy names by itself (an expert config written in `from:`) as
  /// compile() would read it — inside the folders a rules file may reach, a regular file, within
  /// the size limit — without a model (`validate`); errors in `diags`, true when none.
  bool check_files(Diagnostics& diags) const;
  /// Runs layer discovery on `model` with this strategy's `discovery:` overrides, as compile()
  /// does (what `inspect --rules` shows).
  void discover(Inventory& model, Diagnostics& diags) const;
  /// The texts it was read from: pass them to format_diagnostics for source lines and carets.
  const SourceTexts& sources() const;

 private:
  friend struct PlanAccess;  // layerfreeze's own components (src/api/plan_access.hpp)
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

/// The state of a plan at one time.
struct PlanState {
  Time at;
  std::vector<bool> frozen;  // per inventory parameter
  /// Elements: a fused expert tensor frozen in part counts its frozen experts' share as frozen.
  int64_t frozen_numel = 0, trainable_numel = 0;
  /// Tensors: a tensor is frozen only when all of it is (masked ones count as trainable).
  size_t frozen_tensors = 0, trainable_tensors = 0;
  /// Fused expert tensors frozen in part: (inventory index, its frozen experts, ascending).
  std::vector<std::pair<uint32_t, std::vector<int32_t>>> masked;
};

/// One change of state on a plan's timeline.
struct ChangePoint {
  Time at;
  std::vector<std::string> causes;                     // the stages that fire here
  std::vector<uint32_t> newly_frozen, newly_unfrozen;  // inventory indices
  /// Fused expert tensors whose frozen experts change here without freezing them whole (a
  /// change of experts only); state_at(at).masked has their masks.
  std::vector<uint32_t> remasked;
};

/// How two plans differ: everything a trainer would run differently — the model, the bound
/// parameters, the executor policies and, per change point, the frozen tensors, expert slices and
/// the learning rates of the param groups it opens. Empty exactly when the fingerprints match.
struct PlanDiff {
  struct Item {
    /// kState: frozen tensors or expert slices at a time; kLearningRate: the param groups a
    /// change point opens; kSchedule: when or how states change (periodic stages, triggers).
    enum class Kind { kModel, kParameter, kPolicy, kState, kLearningRate, kSchedule };
    Kind kind = Kind::kState;
    std::string where;  // "model", "parameter lr_decay", "policy lr_decay", "epoch 3", ...
    std::string what;   // "2.6 in A, 5 in B"
  };
  std::vector<Item> items;
  bool differs() const { return !items.empty(); }
  /// One line an item: "policy lr_decay: 2.6 in A, 5 in B".
  std::string text() const;
};

/// The printed views of one plan (`layerfreeze plan`) for one optimizer up to one horizon,
/// computed once — counts, memory, where backward stops, layer groups, the deciding rules — and
/// read by every format. Cheap to copy; keeps its plan alive.
class PlanReport {
 public:
  std::string text() const;
  std::string json() const;  // "layerfreeze.plan/1" (docs/CLI.md)
  /// `svg_link`: a picture file written beside it, linked from the Markdown.
  std::string markdown(const std::string& svg_link = "") const;
  std::string svg() const;
  std::string html() const;
  /// The counts of each change point shown.
  struct Stage {
    Time at;
    std::string when;  // "epoch 3", "step 40", as the views print it
    int64_t frozen_numel = 0, trainable_numel = 0;
    size_t frozen_tensors = 0, trainable_tensors = 0;
    /// The memory line: gradient and optimizer-state bytes a step keeps for what trains (a
    /// tensor frozen in part: its trainable slices only); kept_bytes() measures the same two.
    int64_t gradient_bytes = 0, optimizer_bytes = 0;
    /// The compute line: a step's cost relative to full fine-tuning (0 when shapes are unknown),
    /// and with the cacheable prefix read from a cache (docs/CACHE.md; 0 when nothing is
    /// cacheable); with a sequence length given to report(), attention and a tied output layer
    /// are counted.
    double step_cost = 0, cached_step_cost = 0;
    int32_t cache_layers = -1;  // the cacheable prefix: embeddings and layers [0, cache_layers)
    int64_t cache_bytes = 0;    // its cache's size for the report's cache_samples × seq_len
  };
  std::vector<Stage> stages() const;
  /// The data-parallel lint's warnings (report(…, distributed = true)); empty otherwise.
  std::vector<Diagnostic> distributed_warnings() const;

 private:
  friend class Plan;
  std::shared_ptr<const CompiledPlan> plan_;
  std::shared_ptr<const PlanSummary> summary_;
};

/// A strategy compiled against one model: every rule resolved, the stages laid out in time. The
/// state at any time is a pure function of the plan and (epoch, step). Cheap to copy.
class Plan {
 public:
  const Inventory& inventory() const;  // with what discovery found (layers, roles, towers)
  const std::string& name() const;
  const std::string& origin() const;
  /// The hash of canonical(): two plans (processes, ranks, a lock and today's compile) have one
  /// fingerprint exactly when a trainer would run the same thing under them.
  const std::string& fingerprint() const;
  /// The canonical plan: versioned JSON, keys sorted, numbers exact (docs/CLI.md, "The canonical
  /// plan") — the model's inventory, bound parameters, policies, and every change point's frozen
  /// tensors, expert slices and param-group learning rates.
  const std::string& canonical() const;
  const std::vector<Diagnostic>& warnings() const;

  PlanState state_at(const Time& t) const;
  /// The change points from the start up to (not including) `horizon` (default: horizon()).
  std::vector<ChangePoint> change_points(std::optional<Time> horizon = std::nullopt) const;
  /// How far the plan is shown: up to `epochs`/`steps`, else just past its last trigger.
  Time horizon(std::optional<int64_t> epochs = std::nullopt,
               std::optional<int64_t> steps = std::nullopt) const;
  /// The rule that decides parameter `name`'s state at `t` ("rules/lp_lora.yaml:20:5 freeze
  /// layers(first_ratio=0.5)"); "" when no rule selects it (trainable by default); nullopt when
  /// the model has no parameter of that name.
  std::optional<std::string> provenance(const std::string& name, const Time& t) const;

  /// The printers of `layerfreeze plan` and `explain` (docs/RULES.md shows their output).
  std::string text(OptimizerKind optimizer = OptimizerKind::AdamW,
                   std::optional<Time> horizon = std::nullopt) const;
  std::string markdown(OptimizerKind optimizer = OptimizerKind::AdamW,
                       std::optional<Time> horizon = std::nullopt) const;
  std::string json(OptimizerKind optimizer = OptimizerKind::AdamW,
                   std::optional<Time> horizon = std::nullopt) const;
  /// The picture (`plan --format svg`) and the self-contained report (`--format html`).
  std::string svg(OptimizerKind optimizer = OptimizerKind::AdamW,
                  std::optional<Time> horizon = std::nullopt) const;
  std::string html(OptimizerKind optimizer = OptimizerKind::AdamW,
                   std::optional<Time> horizon = std::nullopt) const;
  /// `layerfreeze explain`: parameter `name`'s role, state at `t` and history up to `horizon`
  /// (default: horizon()); nullopt when the model has no parameter of that name.
  std::optional<std::string> explain(const std::string& name, const Time& t,
                                     std::optional<Time> horizon = std::nullopt) const;
  /// The views of `layerfreeze plan` computed once for `optimizer` up to `horizon` (default:
  /// horizon()); `distributed` adds the data-parallel lint (`plan --distributed`).
  PlanReport report(OptimizerKind optimizer = OptimizerKind::AdamW,
                    std::optional<Time> horizon = std::nullopt, bool distributed = false) const;
  /// The same, with the size of a cache of the frozen prefix's output for `cache_samples`
  /// sequences of `seq_len` tokens in every view (`plan --cache-samples N --seq-len S`,
  /// docs/CACHE.md).
  PlanReport report(OptimizerKind optimizer, std::optional<Time> horizon, bool distributed,
                    int64_t cache_samples, int64_t seq_len) const;

  /// The bound strategy parameters, "freeze_ratio=0.5, freeze_embed=true" ("" when none).
  std::string parameters_text() const;
  /// Steps in one epoch, when the strategy or the options say.
  std::optional<int64_t> steps_per_epoch() const;
  /// Whether some stage triggers on steps (times are then shown as steps).
  bool uses_steps() const;

  /// Metric-triggered stages (docs/RULES.md, "Metric triggers"). The metrics they watch, sorted.
  std::vector<std::string> watched_metrics() const;
  /// The plan a run follows when its metrics plateau as `assumptions` say ("val_loss: plateau at
  /// epoch 3", "val_loss: plateaus at epochs 3, 7"; `plan --assume`). Stages not fired by an
  /// assumption sit at the latest their windows allow. Same fingerprint: the definition's.
  /// Errors (a malformed assumption, a metric no stage watches) go to `diags`.
  std::optional<Plan> assuming(const std::vector<std::string>& assumptions,
                               Diagnostics& diags) const;
  /// The plan a run that reported `history` follows (`plan --metrics FILE`): "EPOCH METRIC
  /// VALUE" lines in the order reported, `name` standing for the file in messages — a recorded
  /// history gives the plan of the run that recorded it.
  std::optional<Plan> replaying(const std::string& history, const std::string& name,
                                Diagnostics& diags) const;

 private:
  friend struct PlanAccess;
  explicit Plan(std::shared_ptr<const CompiledPlan> p);
  std::shared_ptr<const CompiledPlan> impl_;
};

/// Compiles `strategy` against `model` (its layers are discovered with the strategy's
/// overrides; the plan keeps the model: pass it with std::move when it is not needed after).
/// Errors and warnings go to `diags`; nullopt when there are errors.
std::optional<Plan> compile(const Strategy& strategy, Inventory model, const PlanOptions& options,
                            Diagnostics& diags);

/// How two plans differ (differs() is false exactly when their fingerprints match).
PlanDiff diff(const Plan& a, const Plan& b);

/// `layerfreeze diff`: how two plans of one model differ over time, up to `horizon`, then what
/// else differs (learning rates, policies, parameters). `differs`, when given, is set to
/// diff(a, b).differs().
std::string diff_text(const Plan& a, const Plan& b, std::optional<Time> horizon = std::nullopt,
                      bool* differs = nullptr);
/// `layerfreeze diff --format svg`: the two plans side by side on shared rows and the union of
/// their change points, differing cells outlined; `name_a`/`name_b` label them.
std::string diff_svg(const Plan& a, const Plan& b, const std::string& name_a,
                     const std::string& name_b, std::optional<Time> horizon = std::nullopt);
/// `layerfreeze diff --format html`: the same as a report, with `text` (the text diff) shown.
std::string diff_html(const Plan& a, const Plan& b, const std::string& name_a,
                      const std::string& name_b, const std::string& text,
                      std::optional<Time> horizon = std::nullopt);

}  // namespace layerfreeze
