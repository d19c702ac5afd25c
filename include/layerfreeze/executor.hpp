// Executor: applies a freezing strategy to a live LibTorch module during training. It compiles
// the rules against the module's own parameters, then at each epoch/step sets `requires_grad`
// (and drops the gradient of what it freezes) for exactly the parameters whose state changes.
// A call with no change costs a few integer comparisons.
//
//   layerfreeze::PlanOptions po;
//   po.values = {{"total_epochs", int64_t{10}}};  // typed strategy parameters
//   layerfreeze::Executor ex(*model, "preset:gradual_unfreeze", po);
//   torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-4));
//   ex.attach_optimizer(opt);
//   for (int64_t epoch = 0; epoch < 10; ++epoch) {
//     ex.on_epoch_begin(epoch);
//     for (...) { ex.on_step(step++); ...; opt.step(); }
//   }
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"
#include "layerfreeze/plan.hpp"

namespace at {
class Tensor;
}
namespace torch {
using at::Tensor;
namespace nn {
class Module;
}
namespace jit {
struct Module;
}
namespace optim {
class Optimizer;
}
}  // namespace torch

namespace layerfreeze {

/// What a checkpoint must keep so a resumed run lands in the same state.
struct ExecutorState {
  std::string fingerprint;  // of the canonical plan; a mismatch is refused on restore
  int64_t epoch = 0;
  int64_t step = 0;
  /// Metric stages (docs/RULES.md, "Metric triggers"): what fired, when and on which best
  /// value, and each watched
  /// metric's best value (exact), reports without improvement and a plateau not yet acted on —
  /// so a restored run decides as the uninterrupted one would, without re-reporting.
  std::string triggers;
  int version = 3;  // of the text it was parsed from; 2 says nothing of metric stages

  /// "layerfreeze-state/3 FINGERPRINT EPOCH STEP [TRIGGERS]", for a checkpoint's metadata.
  std::string to_string() const;
  /// The inverse; throws DiagnosticError on anything else ("old-state" for a
  /// layerfreeze-state/1, whose fingerprint did not cover learning rates and policies). A
  /// layerfreeze-state/2 parses; restore accepts it for plans without metric stages.
  static ExecutorState parse(const std::string& text);
};

/// A change of the frozen set that training reached (on_epoch_begin / on_step), as
/// Executor::on_transition reports it.
struct Transition {
  Time at;
  std::vector<std::string> causes;  // the stages that fired ("stage 'thaw' on val_loss plateau")
  bool metric = false;              // a metric stage fired (a plateau, or its not_after)
  size_t newly_frozen = 0, newly_unfrozen = 0;  // tensors
};

/// The frozen prefix a cache of activations may stand in for now (docs/CACHE.md): the
/// embeddings and trunk layers [0, layers), every parameter in them frozen whole.
struct CacheablePrefix {
  int32_t layers = -1;  // -1: nothing is cacheable (the embeddings train, …); 0: the embeddings
  std::string stops;    // why it is not deeper: "layer 2 trains"
  std::vector<size_t> params;  // the prefix's parameters (inventory indices)
  /// Modules of the prefix that make its output vary for a sample in train mode, read from the
  /// live modules now: dropout with p > 0 and BatchNorm, in train mode ("transformer.h.0.drop
  /// (Dropout, p=0.1) in train mode"). `options.frozen_prefix: eval` holds them in eval mode.
  std::vector<std::string> train_mode_effects;
  /// Dropout modules in train mode whose side of the boundary the module tree does not tell
  /// (a parameter-less module under a parent holding both the prefix and what trains, such as
  /// GPT-2's `transformer.drop`): the prefix may or may not run them.
  std::vector<std::string> unplaced;
  bool cacheable() const { return layers >= 0; }
};

class Executor {
 public:
  /// Compiles `rules` (a path or "preset:NAME") against `model` and applies the state at the
  /// start (epoch 0, step 0). Throws DiagnosticError (all diagnostics, file:line:col) when the
  /// rules or the binding are invalid; the model is then left as it was.
  Executor(torch::nn::Module& model, const std::string& rules, PlanOptions options = {});
  Executor(torch::jit::Module& model, const std::string& rules, PlanOptions options = {});
  /// Binds a plan compiled with the public API (include/layerfreeze/plan.hpp) to `model`; the
  /// plan must be of this module (same names, shapes and dtypes, or DiagnosticError).
  Executor(torch::nn::Module& model, const Plan& plan);
  Executor(torch::jit::Module& model, const Plan& plan);
  ~Executor();
  Executor(Executor&&) noexcept;
  Executor& operator=(Executor&&) noexcept;

  /// Lets the executor keep `optimizer` consistent with the plan, now and at every change: the
  /// state of parameters it freezes is dropped (per the plan's `optimizer_state` option); every
  /// trainable parameter the optimizer does not hold joins a new param group, one per learning
  /// rate; and a held parameter that a stage gave its own rate (`lr`, `lr_scale`, or the plan's
  /// `unfreeze_lr_scale` and `lr_decay`) moves to a group at that rate, keeping its optimizer
  /// state. So an optimizer attached after stages fired, one built from `model->parameters()`
  /// (frozen tensors included) and a stage that fires at epoch 0 all end with the groups
  /// `plan` prints. Parameters no stage decided stay in the groups you made. Optimizers that
  /// create state eagerly (Adagrad) get it for what joins. The optimizer must outlive the
  /// executor or be detached. Throws DiagnosticError when the optimizer holds one tensor twice
  /// (a tied weight listed under both names is stepped twice per step).
  void attach_optimizer(torch::optim::Optimizer& optimizer);
  void detach_optimizer();

  /// Training time. Each returns true when the frozen set changed. `seek` moves to any time,
  /// backwards included (a resumed run); moving forward it applies every stage on the way in
  /// order, so optimizer groups end up as if every epoch had been stepped through. Moving
  /// backward keeps the param groups added on the way forward: a parameter frozen again stays
  /// in its group with requires_grad off, no gradient and (under `optimizer_state: drop`) no
  /// optimizer state, so no step moves it; moving forward again adds nothing twice. If LibTorch
  /// refuses a change, the module is left at the last change point completed, and so is the
  /// executor's time.
  bool on_epoch_begin(int64_t epoch);
  /// Tensors frozen in part (some experts of a fused expert tensor, some rows: docs/ROWS.md)
  /// train through a compact tensor of their trainable slices, which the attached optimizer
  /// holds in their place — with optimizer state for those slices only. Around every
  /// `optimizer.step()`: before_optimizer_step() gathers the trainable slices' weights and
  /// gradients into the compact tensors (after backward and any gradient sync) and drops the
  /// whole gradients; after_optimizer_step() writes the compact tensors back into the model.
  /// step_optimizer() does the three in one call. on_step / on_epoch_begin throw
  /// DiagnosticError ("missing-before-step", "missing-after-step") when a step skipped either.
  /// Both cost nothing without such tensors.
  void before_optimizer_step();
  void after_optimizer_step();
  /// before_optimizer_step(), the attached optimizer's step(), after_optimizer_step().
  void step_optimizer();
  bool on_step(int64_t global_step);
  bool seek(int64_t epoch, int64_t global_step = 0);
  /// Whether misuse of time throws DiagnosticError (on by default): an epoch or step before the
  /// current one outside seek/restore ("time-backwards"), a negative one ("time-negative"), an
  /// epoch at or past the strategy's `total_epochs` ("past-total-epochs"), a global step in
  /// another epoch than the one begun when the plan has steps_per_epoch ("epoch-not-begun",
  /// "step-behind-epoch"), on_step before any on_epoch_begin while a stage waits for a later
  /// epoch ("epoch-not-begun"). Off: times are taken as given, as before.
  void set_strict(bool on);

  /// One evaluation of a metric a stage watches (a validation's result: `plan` lists the
  /// metric stages). A plateau — `patience` reports without improving on the best by more than
  /// `min_delta` — fires the waiting stage at the next on_epoch_begin, in order with the time
  /// stages; a stage whose `not_after` comes first fires there. Under strict time
  /// (set_strict), throws DiagnosticError for a metric no stage watches ("unknown-metric",
  /// with the closest watched name) and for a NaN or infinite value ("metric-not-finite");
  /// otherwise those are ignored, or counted as no improvement. Under data parallelism every
  /// rank must report the same value (distributed::mean_across_ranks).
  void report(const std::string& metric, double value);
  /// The metrics the plan's stages watch, sorted (empty: report is never needed).
  std::vector<std::string> watched_metrics() const;
  /// Called after every change of the frozen set that on_epoch_begin or on_step applies (not
  /// seek or restore, which put back a state the trainer's own checkpoint already matches): the
  /// place to rebuild an LR scheduler, reload the best checkpoint or reset optimizer state at a
  /// transition (docs/API.md, "Metric triggers"). Replaces the previous callback; empty: none.
  void on_transition(std::function<void(const Transition&)> callback);

  /// Re-puts frozen BatchNorm modules in eval mode (policy `batchnorm: eval_when_frozen`);
  /// on_epoch_begin and on_step call it, so a trainer's `model->train()` is undone at once.
  void enforce_modes();

  /// The cacheable frozen prefix now (docs/CACHE.md), what PrefixCache caches.
  CacheablePrefix cacheable_prefix() const;

  ExecutorState state() const;
  /// Seeks to a checkpointed time with the metric stages as they were (what fired, each
  /// metric's best and count). Throws DiagnosticError when the checkpoint was written with
  /// another plan (fingerprint mismatch), or is a layerfreeze-state/2 of a plan with metric
  /// stages ("old-state").
  void restore(const ExecutorState& state);

  /// Trainable parameters now, each tensor once (a tied weight handed twice to a LibTorch
  /// optimizer is stepped twice), in registration order.
  std::vector<torch::Tensor> trainable_parameters() const;
  /// Every parameter, frozen or not, each tensor once, in inventory order.
  std::vector<torch::Tensor> parameters() const;
  /// How many changes of the frozen set have been applied: compare two readings to learn
  /// cheaply whether anything changed in between (GradientSync rebuilds its buckets on it).
  uint64_t generation() const;
  std::vector<std::string> frozen_names() const;
  int64_t trainable_numel() const;
  int64_t frozen_numel() const;
  int32_t num_layers() const;
  const std::string& fingerprint() const;
  /// The plan as `layerfreeze plan` prints it (text), up to `epochs`.
  std::string plan_text(int64_t epochs = -1) const;
  /// Warnings of the compile (tied tensors, no-match, `other` parameters).
  const std::vector<Diagnostic>& warnings() const;
  /// The module's inventory as discovery annotated it (layers, roles), in the plan's order.
  const Inventory& inventory() const;
  /// Whether parameter `i` (an inventory index) is frozen now (whole).
  bool is_frozen(size_t i) const;
  /// The slices of tensor `i` that are frozen now while the rest of it trains — the experts of a
  /// fused expert tensor, the rows a row selector cut (empty when it is not frozen in part).
  std::vector<int32_t> frozen_slices(size_t i) const;
  /// The same, by its older name.
  std::vector<int32_t> frozen_experts(size_t i) const;
  /// The compact tensor of tensor `i`'s trainable slices that the attached optimizer holds in
  /// its place (docs/ROWS.md); nullptr when it has none.
  const torch::Tensor* compact_tensor(size_t i) const;
  /// The plan it runs.
  const Plan& plan() const;

  struct Impl;

 private:
  void attach(torch::optim::Optimizer& optimizer);
  std::unique_ptr<Impl> impl_;
};

/// Every parameter of `model` that requires a gradient, each tensor once.
std::vector<torch::Tensor> trainable_parameters(torch::nn::Module& model);

/// What a training step holds between steps, measured: the bytes of the gradients of `params`
/// (a model's parameters) and of the tensors `optimizer` holds (a compact tensor of a partly
/// frozen one, docs/ROWS.md), each tensor once; and of the optimizer's state (SGD momentum,
/// Adam/AdamW moments, RMSprop averages, Adagrad sums; a scalar step counter is not counted).
/// The plan's memory line (`gradients … + optimizer state …`) estimates these two numbers.
struct KeptBytes {
  int64_t gradients = 0, optimizer_state = 0;
};
KeptBytes kept_bytes(const std::vector<torch::Tensor>& params,
                     const torch::optim::Optimizer& optimizer);

/// The module as layerfreeze reads it — names in registration order, shapes, dtypes, module
/// types, ties — with the structure discovery finds: what an Executor compiles against.
/// Throws DiagnosticError when LibTorch cannot list the parameters.
Inventory inventory_of(torch::nn::Module& model);
Inventory inventory_of(torch::jit::Module& model);
/// Writes inventory_of(model) to `path` (atomically) as the manifest `layerfreeze inspect
/// --format json` writes: `layerfreeze plan --model PATH` in CI then compiles exactly the plan
/// the trainer's Executor runs — same fingerprint, module-type rules included. Throws
/// DiagnosticError ("manifest-write") when the file cannot be written.
void write_manifest(torch::nn::Module& model, const std::string& path);
void write_manifest(torch::jit::Module& model, const std::string& path);

/// FrozenGuard remembers a checksum of every frozen parameter and reports any that changed —
/// catching an optimizer step, a weight-decay term or a stray in-place write to a "frozen" weight.
class FrozenGuard {
 public:
  explicit FrozenGuard(torch::nn::Module& model);
  ~FrozenGuard();
  /// Re-takes the checksums of the parameters frozen now.
  void snapshot();
  /// Names of frozen parameters whose values differ from the snapshot.
  std::vector<std::string> changed() const;

 private:
  void take();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerfreeze
