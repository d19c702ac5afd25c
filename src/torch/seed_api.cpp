// The seed API (docs/API.md) on top of the presets, the compiler and the executor: each
// function compiles a shipped preset against the module's live inventory and applies what it
// selects, so `layerfreeze plan preset:NAME` shows exactly what the function does.
#include "api/plan_access.hpp"
#include "layerfreeze/layerfreeze.hpp"

#include <c10/util/Exception.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/nn/module.h>

#include <cmath>
#include <map>
#include <stdexcept>
#include <unordered_set>

#include "analysis/plan_summary.hpp"
#include "core/compiler.hpp"
#include "core/format.hpp"
#include "core/layer_discovery.hpp"
#include "core/metric_triggers.hpp"
#include "core/rules_parser.hpp"
#include "print/module_table.hpp"
#include "torch/errors.hpp"
#include "torch/live_model.hpp"
#include "torch/slice_masks.hpp"

namespace layerfreeze {

namespace {

// The live inventory of either kind of module; LibTorch's errors become DiagnosticError.
template <class Module>
LiveModel live_of(const Module& m, const char* kind) {
  try {
    LiveModel l = live_model(const_cast<Module&>(m));
    l.facts.source = std::string("the ") + kind + l.facts.model_type + " module";
    return l;
  } catch (const c10::Error& e) {
    fail("torch-error",
         std::string("cannot read the module's parameters: ") + e.what_without_backtrace());
  }
}

LiveModel live(const torch::nn::Module& m) { return live_of(m, ""); }
LiveModel live(const torch::jit::Module& m) { return live_of(m, "TorchScript "); }

// Discovery on a live inventory (what `get_num_layers` and the status table need).
Inventory discovered(Inventory inv) {
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  return inv;
}

// Compiles a shipped preset against the live model; the frozen set at the start is what the
// seed function selects. Errors become DiagnosticError (their text names the layer count).
using Values = std::vector<std::pair<std::string, ParamValue>>;

Bitset selected_by(const LiveModel& m, const std::string& preset, const Values& values) {
  Diagnostics diags;
  auto s = Strategy::load("preset:" + preset, diags);
  std::optional<Plan> plan;
  if (s) {
    PlanOptions o;
    o.values = values;
    plan = compile(*s, Inventory(m.facts), o, diags);
  }
  if (!plan) {
    // The compiler's own diagnostics, each with its code and notes; the message names the call.
    Diagnostics errors;
    for (auto d : diags.items())
      if (d.severity == Severity::kError) {
        d.message = preset + ": " + d.message;
        errors.add(std::move(d));
      }
    throw DiagnosticError(std::move(errors));
  }
  // The plan counts its parameters in data-flow order, the module's tensors are in the facts'
  // order: Inventory::order() maps one to the other.
  const auto& order = plan->inventory().order();
  Bitset by_tensor(order.size());
  PlanAccess::compiled(*plan).frozen_at({0, 0}).for_each(
      [&](size_t k) { by_tensor.set(order[k]); });
  return by_tensor;
}

// The seed functions are imperative: they touch what they name and nothing else, so a
// multimodal model's towers are frozen only where the function names everything (freeze_model,
// freeze_except_last_n), never by the presets' freeze_towers default. The tensors change through
// the executor's sink (requires_grad off, gradient dropped), all or none.
int64_t freeze_selected(LiveModel m, const std::string& preset, Values values) {
  values.emplace_back("freeze_towers", false);
  Bitset sel = selected_by(m, preset, values);
  int64_t n = 0;
  TensorSink sink(m.tensors);
  try {
    sel.for_each([&](size_t i) {
      sink.freeze(static_cast<uint32_t>(i));
      n += m.facts.tensors()[i].numel;
    });
  } catch (const c10::Error& e) {
    sink.abort();
    fail("torch-error", std::string("freezing failed (the module was left as it was): ") +
                            e.what_without_backtrace());
  }
  sink.changed({0, 0}, sel);
  return n;
}

// What is frozen now, by position in `inv` (the module's facts with a structure).
Bitset frozen_mask(const LiveModel& m, const Inventory& inv) {
  Bitset f(m.tensors.size());
  for (size_t k = 0; k < m.tensors.size(); ++k)
    if (!m.tensors[inv.order()[k]].requires_grad()) f.set(k);
  return f;
}

int64_t unfreeze_all(LiveModel m) {
  int64_t n = 0;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    m.tensors[i].requires_grad_(true);
    n += m.facts.tensors()[i].numel;
  }
  return n;
}

// Elements an executor's expert mask keeps frozen inside trainable tensor i (docs/EXPERTS.md).
int64_t masked_of(const LiveModel& m, size_t i) {
  return SliceMasks::frozen_numel_of(m.tensors[i].unsafeGetTensorImpl());
}

int64_t trainable_of(const LiveModel& m) {
  int64_t n = 0;
  for (size_t i = 0; i < m.tensors.size(); ++i)
    if (m.tensors[i].requires_grad()) n += m.facts.tensors()[i].numel - masked_of(m, i);
  return n;
}

[[noreturn]] void bad_argument(const LiveModel& m, const std::string& what) {
  Inventory inv = discovered(Inventory(m.facts));
  fail("bad-argument", what + " (" + inv.facts().source + " has " + describe_layers(inv) + ")");
}

// setup_lp_lora_style for either kind of module.
int64_t lp_lora(LiveModel m, double freeze_ratio, bool freeze_embed) {
  if (!(freeze_ratio >= 0.0 && freeze_ratio <= 1.0))
    bad_argument(m, "freeze_ratio must be in [0, 1], got " + std::to_string(freeze_ratio));
  return freeze_selected(std::move(m), "lp_lora",
                         {{"freeze_ratio", freeze_ratio}, {"freeze_embed", freeze_embed}});
}

}  // namespace

int64_t freeze_model(torch::nn::Module& model) {
  return freeze_selected(live(model), "freeze_all", {});
}
int64_t freeze_first_n_layers(torch::nn::Module& model, int64_t n) {
  return freeze_selected(live(model), "freeze_first_n", {{"n", n}});
}
int64_t freeze_last_n_layers(torch::nn::Module& model, int64_t n) {
  return freeze_selected(live(model), "freeze_last_n", {{"n", n}});
}
int64_t freeze_except_last_n(torch::nn::Module& model, int64_t n) {
  return freeze_selected(live(model), "freeze_except_last_n", {{"n", n}});
}
int64_t freeze_embeddings(torch::nn::Module& model) {
  return freeze_selected(live(model), "freeze_embeddings", {});
}
int64_t freeze_by_name(torch::nn::Module& model, const std::vector<std::string>& patterns,
                       bool case_sensitive) {
  if (patterns.empty()) return 0;
  return freeze_selected(live(model), "freeze_by_name",
                         {{"patterns", patterns}, {"case_sensitive", case_sensitive}});
}
int64_t freeze_by_name(torch::nn::Module& model, const std::string& pattern, bool case_sensitive) {
  return freeze_by_name(model, std::vector<std::string>{pattern}, case_sensitive);
}
int64_t unfreeze_model(torch::nn::Module& model) { return unfreeze_all(live(model)); }

int64_t setup_lp_lora_style(torch::nn::Module& model, double freeze_ratio, bool freeze_embed) {
  return lp_lora(live(model), freeze_ratio, freeze_embed);
}

int64_t get_trainable_params(const torch::nn::Module& model) { return trainable_of(live(model)); }

double get_frozen_percentage(const torch::nn::Module& model) {
  LiveModel m = live(model);
  int64_t total = m.facts.total_numel();
  return total > 0
             ? 100.0 * static_cast<double>(total - trainable_of(m)) / static_cast<double>(total)
             : 0.0;
}

int64_t get_num_layers(const torch::nn::Module& model) {
  return discovered(Inventory(live(model).facts)).num_layers();
}

std::string layer_status(const torch::nn::Module& model, bool show_all) {
  LiveModel m = live(model);
  Inventory inv = discovered(Inventory(m.facts));
  // An executor's masks: a fused expert tensor frozen in part makes its layer PARTIAL ("experts
  // 2/8 train"), a tensor cut by rows its group ("rows 32000-32009 of 32010 train").
  SliceTable table;
  table.build(inv);
  for (size_t q = 0; q < inv.params().size(); ++q) {
    const at::Tensor& t = m.tensors[inv.order()[q]];
    if (table.slot[q] < 0 && t.dim() > 0 &&
        !SliceMasks::frozen_slices_of(t.unsafeGetTensorImpl()).empty())
      table.add_rows(static_cast<uint32_t>(q), t.size(0));
  }
  Selection frozen{frozen_mask(m, inv), Bitset(table.size())};
  for (size_t k = 0; k < table.params.size(); ++k)
    for (int32_t e : SliceMasks::frozen_slices_of(
             m.tensors[inv.order()[table.params[k]]].unsafeGetTensorImpl()))
      if (e >= 0 && e < table.slices_of(k))
        frozen.slices.set(table.first[k] + static_cast<size_t>(e));
  return layer_status_table(inv, frozen, table, show_all);
}

void print_layer_status(const torch::nn::Module& model, bool show_all, std::ostream& out) {
  out << layer_status(model, show_all);
}

GradualUnfreezer::GradualUnfreezer(torch::nn::Module& model, int64_t total_epochs,
                                   std::optional<int64_t> unfreeze_embeddings_at,
                                   bool freeze_embeddings, bool verbose, std::ostream& out)
    : model_(&model), verbose_(verbose), out_(&out) {
  LiveModel m = live(model);
  if (total_epochs < 1)
    bad_argument(m, "total_epochs must be at least 1, got " + std::to_string(total_epochs));
  if (unfreeze_embeddings_at && *unfreeze_embeddings_at < 0)
    bad_argument(m, "unfreeze_embeddings_at must not be negative, got " +
                        std::to_string(*unfreeze_embeddings_at));
  PlanOptions o;
  o.values = {{"total_epochs", total_epochs},
              {"unfreeze_embeddings_at",
               unfreeze_embeddings_at ? ParamValue(*unfreeze_embeddings_at) : ParamValue(nullptr)},
              {"freeze_embeddings", freeze_embeddings}};
  start(model, "preset:gradual_unfreeze", std::move(o));
}

GradualUnfreezer::GradualUnfreezer(torch::nn::Module& model, const PlateauSchedule& schedule,
                                   bool freeze_embeddings, bool verbose, std::ostream& out)
    : model_(&model), verbose_(verbose), out_(&out) {
  LiveModel m = live(model);
  if (!is_metric_name(schedule.metric))
    bad_argument(m, "PlateauSchedule::metric '" + schedule.metric +
                        "' is not a metric name (a letter or '_', then letters, digits, '_', '.', "
                        "'/', ':' or '-')");
  if (schedule.patience < 1)
    bad_argument(m, "PlateauSchedule::patience must be at least 1, got " +
                        std::to_string(schedule.patience));
  if (!(schedule.min_delta >= 0) || !std::isfinite(schedule.min_delta))
    bad_argument(m, "PlateauSchedule::min_delta must be finite and not negative");
  if (schedule.max_epochs_per_layer && *schedule.max_epochs_per_layer < 1)
    bad_argument(m, "PlateauSchedule::max_epochs_per_layer must be at least 1, got " +
                        std::to_string(*schedule.max_epochs_per_layer));
  PlanOptions o;
  o.values = {{"metric", schedule.metric},
              {"mode", std::string(schedule.maximize ? "max" : "min")},
              {"patience", schedule.patience},
              {"min_delta", schedule.min_delta},
              {"max_epochs_per_layer", schedule.max_epochs_per_layer
                                           ? ParamValue(*schedule.max_epochs_per_layer)
                                           : ParamValue(nullptr)},
              {"freeze_embeddings", freeze_embeddings}};
  start(model, "preset:unfreeze_on_plateau", std::move(o));
}

void GradualUnfreezer::report(const std::string& metric, double value) {
  executor_->report(metric, value);
}

void GradualUnfreezer::start(torch::nn::Module& model, const std::string& preset, PlanOptions o) {
  std::ostream& out = *out_;
  const bool verbose = verbose_;
  // The seed API prints only when verbose, and only to its stream.
  std::ostream* stream = &out;
  o.on_warning = [verbose, stream](const Diagnostic& w) {
    if (verbose) *stream << format_diagnostic(w);
  };
  try {
    executor_ = std::make_unique<Executor>(model, preset, o);
  } catch (const c10::Error& e) {
    fail("torch-error",
         std::string("GradualUnfreezer: LibTorch refused: ") + e.what_without_backtrace());
  }
  if (verbose_) {
    // A tensor shared by the embeddings and the head follows the embeddings: say so once.
    for (const auto& p : executor_->inventory().params())
      for (size_t k = 0; k < p.aliases.size() && k < p.alias_roles.size(); ++k)
        if (p.role == Role::kEmbeddings && p.alias_roles[k] == Role::kHead)
          *out_ << "GradualUnfreezer: '" << p.aliases[k] << "' is the same tensor as '" << p.name
                << "'; it follows the embeddings (frozen while they are)\n";
  }
}

GradualUnfreezer::~GradualUnfreezer() = default;

Executor& GradualUnfreezer::executor() { return *executor_; }

void GradualUnfreezer::step(int64_t epoch) {
  if (epoch < 0) {
    Inventory inv = executor_->inventory();
    fail("time-negative", "epoch must not be negative, got " + std::to_string(epoch) + " (" +
                              inv.facts().source + " has " + describe_layers(inv) + ")");
  }
  const Inventory& inv = executor_->inventory();
  std::vector<bool> before(inv.params().size());
  for (size_t i = 0; i < before.size(); ++i) before[i] = executor_->is_frozen(i);
  if (!executor_->seek(epoch, 0) || !verbose_) return;
  // One line per change: which layers opened (or closed), and what trains now.
  std::vector<int32_t> opened, closed;
  size_t other_opened = 0, other_closed = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    bool now = executor_->is_frozen(i);
    if (now == before[i]) continue;
    int32_t l = inv.params()[i].layer;
    auto& list = now ? closed : opened;
    if (l >= 0) {
      if (list.empty() || list.back() != l) list.push_back(l);
    } else {
      ++(now ? other_closed : other_opened);
    }
  }
  auto describe = [](std::vector<int32_t> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    std::string s;
    for (size_t i = 0; i < v.size();) {
      size_t j = i;
      while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
      s += (s.empty() ? "" : ", ") + std::to_string(v[i]) +
           (j > i ? "-" + std::to_string(v[j]) : "");
      i = j + 1;
    }
    return s;
  };
  int64_t total = inv.total_numel(), trainable = executor_->trainable_numel();
  *out_ << "Epoch " << epoch << ":";
  if (!opened.empty())
    *out_ << " unfroze layer" << (opened.size() > 1 ? "s " : " ") << describe(opened);
  if (other_opened)
    *out_ << (opened.empty() ? " unfroze " : " + ") << other_opened << " other parameter tensor"
          << (other_opened > 1 ? "s" : "");
  if (!closed.empty())
    *out_ << " froze layer" << (closed.size() > 1 ? "s " : " ") << describe(closed);
  if (other_closed)
    *out_ << " froze " << other_closed << " other parameter tensor"
          << (other_closed > 1 ? "s" : "");
  *out_ << " — trainable " << with_commas(trainable) << " of " << with_commas(total) << " ("
        << percent(trainable, total) << ")\n";
}

MemorySavings get_memory_savings_estimate(const torch::nn::Module& model, OptimizerKind optimizer) {
  LiveModel m = live(model);
  const int states = optimizer == OptimizerKind::SGD           ? 0
                     : optimizer == OptimizerKind::SGDMomentum ? 1
                                                               : 2;
  MemorySavings s;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const at::Tensor& t = m.tensors[i];
    int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    if (t.requires_grad()) {
      // A tensor frozen in part (fused experts, rows) keeps gradient and optimizer state for its
      // trainable slices only (an executor with an optimizer attached: docs/ROWS.md).
      const int64_t masked = masked_of(m, i);
      const int64_t masked_bytes = masked * static_cast<int64_t>(t.element_size());
      s.trainable_params += t.numel() - masked;
      s.frozen_params += masked;
      s.masked_frozen_params += masked;
      s.gradient_saved_bytes += masked_bytes;
      s.optimizer_saved_bytes += masked_bytes * states;
    } else {
      s.frozen_params += t.numel();
      s.gradient_saved_bytes += bytes;
      s.optimizer_saved_bytes += bytes * states;
    }
  }
  s.gradient_saved_gb = static_cast<double>(s.gradient_saved_bytes) / 1e9;
  s.optimizer_saved_gb = static_cast<double>(s.optimizer_saved_bytes) / 1e9;
  s.total_saved_gb = s.gradient_saved_gb + s.optimizer_saved_gb;
  return s;
}

std::vector<std::string> get_layer_names(const torch::nn::Module& model, bool include_params) {
  LiveModel m = live(model);
  if (!include_params) return m.owner_modules;
  std::vector<std::string> names;
  for (const auto& p : m.facts.tensors()) names.push_back(p.name);
  return names;
}

TrainingTimeEstimate estimate_training_time(const torch::nn::Module& model, int64_t num_samples,
                                            int64_t batch_size, int64_t num_epochs,
                                            double ms_per_step) {
  if (num_samples < 0 || batch_size <= 0 || num_epochs < 0 || !(ms_per_step >= 0) ||
      !std::isfinite(ms_per_step)) {
    LiveModel m = live(model);
    bad_argument(m,
                 "estimate_training_time needs num_samples >= 0, batch_size > 0, num_epochs >= 0 "
                 "and a finite "
                 "ms_per_step >= 0 (got " +
                     std::to_string(num_samples) + ", " + std::to_string(batch_size) + ", " +
                     std::to_string(num_epochs) + ", " + std::to_string(ms_per_step) + ")");
  }
  TrainingTimeEstimate e;
  e.steps_per_epoch = (num_samples + batch_size - 1) / batch_size;
  e.total_steps = e.steps_per_epoch * num_epochs;
  e.total_seconds = static_cast<double>(e.total_steps) * ms_per_step / 1000.0;
  int64_t secs = static_cast<int64_t>(e.total_seconds);
  int64_t h = secs / 3600, mnt = (secs % 3600) / 60, sec = secs % 60;
  if (h > 0)
    e.formatted = std::to_string(h) + "h " + std::to_string(mnt) + "m " + std::to_string(sec) + "s";
  else if (mnt > 0)
    e.formatted = std::to_string(mnt) + "m " + std::to_string(sec) + "s";
  else
    e.formatted = std::to_string(sec) + "s";
  return e;
}

std::string model_summary(const torch::nn::Module& model, int max_depth) {
  LiveModel m = live(model);
  if (max_depth < 1)
    bad_argument(m, "max_depth must be at least 1, got " + std::to_string(max_depth));
  std::vector<bool> frozen(m.tensors.size());
  int64_t bytes = 0;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    frozen[i] = !m.tensors[i].requires_grad();
    bytes += m.facts.tensors()[i].numel * static_cast<int64_t>(m.tensors[i].element_size());
  }
  ModuleTable table = module_table(Inventory(m.facts), frozen, max_depth);
  table.bytes = bytes;
  return module_table_text(table);
}

void print_model_summary(const torch::nn::Module& model, int max_depth, std::ostream& out) {
  out << model_summary(model, max_depth);
}

// TorchScript overloads.
int64_t freeze_model(torch::jit::Module& model) {
  return freeze_selected(live(model), "freeze_all", {});
}
int64_t freeze_first_n_layers(torch::jit::Module& model, int64_t n) {
  return freeze_selected(live(model), "freeze_first_n", {{"n", n}});
}
int64_t setup_lp_lora_style(torch::jit::Module& model, double freeze_ratio, bool freeze_embed) {
  return lp_lora(live(model), freeze_ratio, freeze_embed);
}
int64_t unfreeze_model(torch::jit::Module& model) { return unfreeze_all(live(model)); }
int64_t get_trainable_params(const torch::jit::Module& model) { return trainable_of(live(model)); }
int64_t get_num_layers(const torch::jit::Module& model) {
  return discovered(Inventory(live(model).facts)).num_layers();
}
std::string layer_status(const torch::jit::Module& model, bool show_all) {
  LiveModel m = live(model);
  const Inventory inv = discovered(Inventory(m.facts));
  return layer_status_table(inv, frozen_mask(m, inv), show_all);
}

}  // namespace layerfreeze
