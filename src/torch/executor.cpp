// The executor: the one place that touches live tensors. It compiles a strategy against the
// module's own inventory and, at each change of state, flips requires_grad on exactly the
// parameters that change (dropping the gradient of what it freezes), keeps an attached optimizer
// consistent, and holds frozen BatchNorm modules in eval mode when the plan asks for it.
#include "layerfreeze/executor.hpp"
#include "api/plan_access.hpp"

#include <c10/util/Exception.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_set>

#include "core/format.hpp"
#include "core/hash.hpp"
#include "core/metric_triggers.hpp"
#include "core/replay.hpp"
#include "print/plan_printer.hpp"
#include "torch/compat.hpp"
#include "torch/errors.hpp"
#include "torch/live_model.hpp"
#include "torch/optimizer_groups.hpp"
#include "torch/prefix_modes.hpp"
#include "torch/slice_masks.hpp"

namespace layerfreeze {

struct Executor::Impl : TensorSink {
  Impl() : TensorSink(live.tensors), masks(live.tensors) {}

  LiveModel live;
  SliceMasks masks;  // tensors frozen in part: fused experts, rows
  int64_t last_step = -1;
  std::optional<Plan> public_plan;
  const CompiledPlan* plan = nullptr;  // the public plan's, or `placed` once a metric stage fired
  std::shared_ptr<const CompiledPlan> placed;
  TriggerMonitor monitor;  // metric stages: reports, plateaus, what fired
  std::function<void(const Transition&)> on_transition;
  bool notify = false;                  // a training move: changes are reported
  std::vector<Transition> transitions;  // of the move being applied
  std::unique_ptr<Replay> replay;
  std::function<bool()> root_training;
  torch::optim::Optimizer* optimizer = nullptr;
  // Tensors the attached optimizer holds: a change point that thaws only held tensors with no
  // rate to keep (LISA's switches) costs a lookup each, not a walk of every param group.
  std::unordered_set<const void*> in_optimizer;
  std::vector<size_t> frozen_bn;  // indices into live.batchnorms that are frozen now
  PrefixModes prefix;             // the cacheable prefix's modules (frozen_prefix: eval)
  uint64_t generation = 0;        // changes applied so far
  bool started = false;
  bool strict = true;        // misuse of time is an error (set_strict)
  bool eager_state = false;  // the attached optimizer keeps state for every tensor (Adagrad)
  bool epoch_begun = false;  // on_epoch_begin, seek or restore was called

  // What the constructors do: read the module, name it, compile (or bind a plan), apply the
  // state at the start.
  template <class Read>
  void init(Read&& read, const std::string& kind, std::function<bool()> training,
            const std::string& rules, const PlanOptions& o) {
    read_module(read, kind, std::move(training));
    compile(rules, o);
    prefix.bind(live.modules, public_plan->inventory());
    begin();
  }
  template <class Read>
  void init(Read&& read, const std::string& kind, std::function<bool()> training, const Plan& p) {
    read_module(read, kind, std::move(training));
    bind(p);
    prefix.bind(live.modules, public_plan->inventory());
    begin();
  }

  template <class Read>
  void read_module(Read&& read, const std::string& kind, std::function<bool()> training) {
    try {
      live = read();
    } catch (const c10::Error& e) {
      throw_torch_error(e, "reading the module's parameters");
    }
    live.facts.source = kind + live.facts.model_type + " module";
    root_training = std::move(training);
  }

  void begin() {
    plan = &PlanAccess::compiled(*public_plan);
    monitor = TriggerMonitor(plan->watches);
    // A plan placed by a dry run (Plan::assuming, Plan::replaying) runs as its strategy: its
    // metric stages fire on what this run reports, not on the assumed history.
    if (!plan->fired.empty()) follow_placed({});
    replay = std::make_unique<Replay>(*plan);
    try {
      replay->start(*this);  // every tensor once; undone as a whole if LibTorch refuses one
    } catch (const c10::Error& e) {
      throw_torch_error(e, "applying the plan (the module was left as it was)");
    }
    started = true;
  }

  void compile(const std::string& rules, const PlanOptions& o) {
    Diagnostics diags;
    SourceTexts sources;
    auto strategy = Strategy::load(rules, diags, o.section, &sources);
    if (!strategy) throw DiagnosticError(std::move(diags), &sources);
    public_plan = layerfreeze::compile(*strategy, Inventory(live.facts), o, diags);
    if (!public_plan) throw DiagnosticError(std::move(diags), &sources);
    follow_plan_order();
    for (const auto& w : public_plan->warnings()) report_warning(w, o, sources);
  }

  // The plan counts parameters in its data-flow order (Inventory::order(): the facts' order for
  // a live module, which discovery never reorders); the tensors follow it, so index i is the
  // same tensor on both sides.
  void follow_plan_order() {
    const auto& order = public_plan->inventory().order();
    std::vector<uint32_t> new_index(order.size());
    bool moved = false;
    for (size_t k = 0; k < order.size(); ++k) {
      new_index[order[k]] = static_cast<uint32_t>(k);
      moved = moved || order[k] != k;
    }
    if (!moved) return;
    std::vector<at::Tensor> ordered;
    ordered.reserve(order.size());
    for (uint32_t f : order) ordered.push_back(live.tensors[f]);
    live.tensors = std::move(ordered);
    for (auto& bn : live.batchnorms)
      for (auto& q : bn.params) q = new_index[q];
  }

  // Nothing silent: a trainer that never reads warnings() still hears of a dead selector.
  static void report_warning(const Diagnostic& w, const PlanOptions& o,
                             const SourceTexts& sources) {
    if (o.on_warning) return o.on_warning(w);
    static std::mutex mutex;
    static std::set<std::string> seen;  // each distinct warning once per process
    const std::string text = format_diagnostic(w, &sources);
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!seen.insert(text).second) return;
    }
    std::cerr << "layerfreeze: " << text << std::flush;
  }

  // A plan compiled elsewhere (from this module, its checkpoint's header, a manifest): the
  // module's tensors are put in the plan's order, matched by name; every name must match and
  // every known shape agree. Dtypes may differ (a bfloat16 checkpoint loaded in float32).
  void bind(const Plan& p) {
    const Inventory& want = p.inventory();
    Diagnostics d;
    std::vector<at::Tensor> ordered;
    std::vector<uint32_t> new_index(live.tensors.size(), UINT32_MAX);
    std::string missing, mismatched;
    for (size_t i = 0; i < want.params().size(); ++i) {
      const Param& wp = want.params()[i];
      auto at = live.facts.find(wp.name);
      for (size_t k = 0; !at && k < wp.aliases.size(); ++k) at = live.facts.find(wp.aliases[k]);
      if (!at) {
        missing += (missing.empty() ? "" : ", ") + wp.name;
        continue;
      }
      const Tensor& lp = live.facts.tensors()[*at];
      if (wp.shape_known && lp.shape_known && wp.shape != lp.shape)
        mismatched += (mismatched.empty() ? "" : ", ") + wp.name;
      new_index[*at] = static_cast<uint32_t>(ordered.size());
      ordered.push_back(live.tensors[*at]);
    }
    std::string extra;
    for (size_t k = 0; k < new_index.size(); ++k)
      if (new_index[k] == UINT32_MAX)
        extra += (extra.empty() ? "" : ", ") + live.facts.tensors()[k].name;
    if (!missing.empty() || !mismatched.empty() || !extra.empty()) {
      std::vector<std::string> notes;
      if (!missing.empty()) notes.push_back("in the plan, not in the module: " + missing);
      if (!extra.empty()) notes.push_back("in the module, not in the plan: " + extra);
      if (!mismatched.empty()) notes.push_back("shapes differ: " + mismatched);
      d.error("plan-model-mismatch",
              "the plan was compiled for " + want.facts().source + ", which is not " +
                  live.facts.source,
              {}, notes);
      throw DiagnosticError(std::move(d));
    }
    live.tensors = std::move(ordered);
    for (auto& bn : live.batchnorms)
      for (auto& q : bn.params) q = new_index[q];
    public_plan = p;
  }

  // A change point is complete (the tensors changed, through TensorSink): then the optimizer —
  // state of frozen tensors dropped, new trainable tensors added as one param group per
  // learning-rate scale — and the module modes.
  void remask(uint32_t i, const std::vector<int32_t>& frozen_experts) override {
    if (masks.set(i, frozen_experts, optimizer))
      in_optimizer.insert(masks.held(i).unsafeGetTensorImpl());
  }

  // A tensor frozen in part trains through its compact tensor: a step taken without
  // before_optimizer_step / after_optimizer_step would leave its trainable slices unmoved.
  void check_optimizer_calls() {
    if (masks.step_pending()) {
      Diagnostics d;
      d.error("missing-after-step",
              "tensors are frozen in part and the optimizer steps their trainable slices, but "
              "after_optimizer_step() was not called after the last optimizer step, so the model "
              "did not receive the update",
              {},
              {"call executor.after_optimizer_step() right after optimizer.step(), or "
               "executor.step_optimizer() instead of both"});
      throw DiagnosticError(std::move(d));
    }
    if (masks.backward_pending()) {
      Diagnostics d;
      d.error("missing-before-step",
              "tensors are frozen in part and the optimizer steps their trainable slices, but "
              "before_optimizer_step() was not called after the last backward pass, so the "
              "optimizer did not see their gradient",
              {},
              {"call executor.before_optimizer_step() right before optimizer.step() and "
               "after_optimizer_step() right after, or executor.step_optimizer() instead"});
      throw DiagnosticError(std::move(d));
    }
  }

  void changed(const Time& at, const Bitset& frozen) override {
    for (uint32_t i : frozen_now())
      masks.clear(i, optimizer, plan->options.optimizer_state == Options::OptimizerState::kKeep);
    if (optimizer && plan->options.optimizer_state == Options::OptimizerState::kDrop)
      for (uint32_t i : frozen_now()) compat::erase_optimizer_state(*optimizer, live.tensors[i]);
    if (optimizer) {
      // Only what the optimizer lacks, or what a stage gave a rate, needs the groups walked.
      const bool rates = sets_rates();
      std::vector<uint32_t> need;
      for (uint32_t i : unfrozen_now())
        if (rates || !in_optimizer.count(masks.held(i).unsafeGetTensorImpl())) need.push_back(i);
      if (!need.empty()) {
        // What the optimizer holds: a tensor frozen in part is its compact tensor.
        const std::vector<at::Tensor> held = masks.held_all();
        std::vector<GroupWant> todo;
        for (const GroupWant& w : wants(need, at))
          if (w.promised || !in_optimizer.count(held[w.index].unsafeGetTensorImpl()))
            todo.push_back(w);
        reconcile_groups(*optimizer, held, todo);
        for (const GroupWant& w : todo) in_optimizer.insert(held[w.index].unsafeGetTensorImpl());
      }
      // A tensor held all along whose state was dropped while it was frozen (Adagrad steps
      // only tensors with state).
      if (eager_state) {
        std::vector<at::Tensor> thawed;
        for (uint32_t i : unfrozen_now()) thawed.push_back(masks.held(i));
        ensure_eager_state(*optimizer, thawed);
      }
    }
    if (notify) {
      Transition tr;
      tr.at = at;
      tr.newly_frozen = frozen_now().size();
      tr.newly_unfrozen = unfrozen_now().size();
      for (const auto& st : plan->stages)
        if (st.fires(at) && st.period_at(at) * st.period + st.at ==
                                (st.unit == Trigger::Unit::kEpoch ? at.epoch : at.step)) {
          tr.causes.push_back(st.label);
          tr.metric = tr.metric || st.watch >= 0;
        }
      transitions.push_back(std::move(tr));
    }
    TensorSink::changed(at, frozen);
    update_modes(frozen);
    prefix.update(*plan, replay->state(),
                  plan->options.frozen_prefix == Options::FrozenPrefix::kEval, root_training);
    if (started) ++generation;
  }

  // The boundary of `epoch` for the metric stages: what fires there is placed on the plan, and
  // the replay follows the placed plan from now on.
  void boundary(int64_t epoch) {
    if (monitor.empty() || monitor.boundary(epoch).empty()) return;
    follow_fired();
  }

  void follow_fired() {
    follow_placed(monitor.fired());
    replay->rebind(*plan);
  }

  void follow_placed(const std::vector<Firing>& fired) {
    placed = std::make_shared<const CompiledPlan>(PlanAccess::compiled(*public_plan).placed(fired));
    plan = placed.get();
  }

  // A move of training time: the changes it applies are handed to on_transition once complete.
  bool training_move(const Time& t) {
    if (!on_transition) return move_to(t);  // the per-step path stays a comparison
    transitions.clear();
    notify = true;
    bool changed = false;
    try {
      changed = move_to(t);
    } catch (...) {
      notify = false;
      throw;
    }
    notify = false;
    auto done = std::move(transitions);
    transitions.clear();
    for (const auto& tr : done) on_transition(tr);
    return changed;
  }

  // Whether the plan gives thawed tensors a rate of their own (stage lr / lr_scale,
  // unfreeze_lr_scale, lr_decay): else every thawed tensor trains in whatever group holds it.
  bool sets_rates() const {
    return plan->has_stage_lr() || plan->options.unfreeze_lr_scale != 1.0 ||
           plan->options.lr_decay != 1.0;
  }

  // The rate each of `indices` (trainable at `at`) should train at: a stage that unfroze it
  // promises one (its `lr`, its `lr_scale` or the plan's `unfreeze_lr_scale`, times `lr_decay`'s
  // factor); a tensor no stage decided trains in whatever group holds it, or joins at the rate
  // plan_text prints for a new group.
  // `thawed_by_stage_only`: promise a rate only to tensors the initial rules froze (a stage
  // thawed them) — at attach, a tensor trainable from the start stays where the user put it
  // even when a stage's rule also names it, as at a change point.
  std::vector<GroupWant> wants(const std::vector<uint32_t>& indices, const Time& at,
                               bool thawed_by_stage_only = false) const {
    std::vector<GroupWant> out;
    if (indices.empty()) return out;
    const double base = optimizer->defaults().get_lr();
    std::vector<const PlanRule*> deciders;
    if (sets_rates()) deciders = plan->deciders_at(at);
    out.reserve(indices.size());
    for (uint32_t i : indices) {
      const PlanRule* decider = deciders.empty() ? nullptr : deciders[i];
      GroupWant w;
      w.index = i;
      w.when_added = plan->group_lr(i, plan->has_stage_lr() ? decider : nullptr, base);
      const bool thawed = !thawed_by_stage_only || plan->initial_state().params.test(i);
      if (decider && plan->stage_of(decider) && thawed)
        w.promised = plan->group_lr(i, decider, base);
      out.push_back(w);
    }
    return out;
  }

  // Misuse of time (docs/API.md, "The executor"), each a DiagnosticError with the fix: moving
  // backwards outside seek, a negative time, an epoch past the strategy's `total_epochs`, a global
  // step in another epoch than the one begun (with steps_per_epoch), steps while epoch triggers
  // wait for an epoch never begun.
  void check_epoch(int64_t epoch) const {
    if (!strict) return;
    const Time now = replay->now();
    if (epoch < 0)
      fail_with_fix("time-negative",
                    "on_epoch_begin(" + std::to_string(epoch) + "): epochs count from 0",
                    "pass the 0-based epoch index");
    if (epoch < now.epoch)
      fail_with_fix("time-backwards",
                    "on_epoch_begin(" + std::to_string(epoch) + ") after epoch " +
                        std::to_string(now.epoch) + ": training time only moves forward",
                    "to go back on purpose (a resumed or restarted run), call seek(" +
                        std::to_string(epoch) + ", step) or restore(state)");
    auto total = plan->params.find("total_epochs");
    if (total != plan->params.end() && total->second.kind == Value::Kind::kInt &&
        epoch >= total->second.i)
      fail_with_fix(
          "past-total-epochs",
          "on_epoch_begin(" + std::to_string(epoch) + "): the strategy was compiled for " +
              std::to_string(total->second.i) +
              " epochs (total_epochs = " + std::to_string(total->second.i) + "), so epoch " +
              std::to_string(epoch) + " is past its plan",
          "compile with the number of epochs the trainer runs (PlanOptions::values "
          "{\"total_epochs\", N}), or call set_strict(false) to train on in the last state");
  }

  void check_step(int64_t step) const {
    if (!strict) return;
    const Time now = replay->now();
    if (step < 0)
      fail_with_fix("time-negative", "on_step(" + std::to_string(step) + "): steps count from 0",
                    "pass the 0-based global step");
    if (step < now.step)
      fail_with_fix(
          "time-backwards",
          "on_step(" + std::to_string(step) + ") after step " + std::to_string(now.step) +
              ": on_step takes the global step, which only moves forward",
          "count steps across epochs (not from 0 in each epoch); to go back on purpose, call "
          "seek(epoch, " +
              std::to_string(step) + ")");
    if (const auto spe = plan->options.steps_per_epoch) {
      const int64_t implied = step / *spe;
      if (implied > now.epoch)
        fail_with_fix(
            "epoch-not-begun",
            "on_step(" + std::to_string(step) + ") is in epoch " + std::to_string(implied) +
                " by steps_per_epoch = " + std::to_string(*spe) + ", but the last epoch begun is " +
                std::to_string(now.epoch) + ": stages triggered by epochs would not fire",
            "call on_epoch_begin(" + std::to_string(implied) + ") before the epoch's first step");
      if (implied < now.epoch)
        fail_with_fix("step-behind-epoch",
                      "on_step(" + std::to_string(step) + ") is in epoch " +
                          std::to_string(implied) +
                          " by steps_per_epoch = " + std::to_string(*spe) + ", but epoch " +
                          std::to_string(now.epoch) + " has begun",
                      "pass the global step (epoch × steps_per_epoch + step in epoch)");
    } else if (!epoch_begun) {
      for (const auto& st : plan->stages)
        if (st.unit == Trigger::Unit::kEpoch && st.at > 0)
          fail_with_fix(
              "epoch-not-begun",
              "on_step(" + std::to_string(step) +
                  ") before any on_epoch_begin, but the plan "
                  "has a stage at epoch " +
                  std::to_string(st.at) + ", which would never fire",
              "call on_epoch_begin(epoch) at the start of every epoch, on_step(global_step) "
              "at every step");
    }
  }

  bool move_to(const Time& t) {
    bool changed = false;
    try {
      changed = replay->move_to(t, *this);
    } catch (const c10::Error& e) {
      throw_torch_error(e,
                        "applying a stage (the module was left as it was after this call's last "
                        "complete change)");
    }
    if (!changed) enforce_modes();
    return changed;
  }

  void update_modes(const Bitset& f) {
    frozen_bn.clear();
    if (plan->options.batchnorm != Options::BatchNorm::kEvalWhenFrozen) return;
    for (size_t b = 0; b < live.batchnorms.size(); ++b) {
      auto& bn = live.batchnorms[b];
      bool frozen = !bn.params.empty();
      for (uint32_t i : bn.params) frozen = frozen && f.test(i);
      if (frozen) {
        frozen_bn.push_back(b);
        bn.set_training(false);
      } else if (root_training) {
        bn.set_training(root_training());
      }
    }
  }

  void enforce_modes() {
    prefix.enforce();
    // One check in the common case: `model->train()` flips every submodule at once.
    if (frozen_bn.empty() || !live.batchnorms[frozen_bn.front()].is_training()) return;
    for (size_t b : frozen_bn) live.batchnorms[b].set_training(false);
  }
};

Executor::Executor(torch::nn::Module& model, const std::string& rules, PlanOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->init([&] { return live_model(model); }, "the ", [&model] { return model.is_training(); },
              rules, options);
}

Executor::Executor(torch::nn::Module& model, const Plan& plan) : impl_(std::make_unique<Impl>()) {
  impl_->init([&] { return live_model(model); }, "the ", [&model] { return model.is_training(); },
              plan);
}

Executor::Executor(torch::jit::Module& model, const Plan& plan) : impl_(std::make_unique<Impl>()) {
  torch::jit::Module root = model;
  impl_->init([&] { return live_model(model); }, "the TorchScript ",
              [root] { return root.is_training(); }, plan);
}

Executor::Executor(torch::jit::Module& model, const std::string& rules, PlanOptions options)
    : impl_(std::make_unique<Impl>()) {
  torch::jit::Module root = model;
  impl_->init([&] { return live_model(model); }, "the TorchScript ",
              [root] { return root.is_training(); }, rules, options);
}

Executor::~Executor() = default;
Executor::Executor(Executor&&) noexcept = default;
Executor& Executor::operator=(Executor&&) noexcept = default;

void Executor::attach_optimizer(torch::optim::Optimizer& optimizer) {
  torch_guarded("attaching the optimizer", [&] { attach(optimizer); });
}

void Executor::attach(torch::optim::Optimizer& optimizer) {
  std::unordered_set<const void*> held;
  for (const auto& group : optimizer.param_groups())
    for (const auto& t : group.params()) {
      if (held.insert(t.unsafeGetTensorImpl()).second) continue;
      std::string name = "a tensor";
      for (size_t i = 0; i < impl_->live.tensors.size(); ++i)
        if (impl_->live.tensors[i].unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) {
          const Param& p = impl_->plan->inventory->params()[i];
          name = "'" + p.name + "'" + (p.aliases.empty() ? "" : " (also '" + p.aliases[0] + "')");
        }
      Diagnostics d;
      d.error("optimizer-duplicate",
              "the optimizer holds " + name + " twice, so every step would move it twice", {},
              {"build the optimizer from Executor::trainable_parameters() or "
               "layerfreeze::trainable_parameters(), "
               "which list each tensor once"});
      throw DiagnosticError(std::move(d));
    }
  impl_->optimizer = &optimizer;
  impl_->in_optimizer = std::move(held);
  impl_->eager_state = needs_eager_state(optimizer);
  // What trains now is held at the rate the plan promises: a tensor the optimizer lacks (it was
  // attached after a stage fired) joins a group; one a stage gave its own rate — a stage at
  // epoch 0, an optimizer built from model->parameters() — moves to a group at that rate.
  {
    std::vector<uint32_t> trainable;
    const Bitset& f = impl_->replay->frozen();
    for (uint32_t i = 0; i < impl_->live.tensors.size(); ++i)
      if (!f.test(i)) trainable.push_back(i);
    reconcile_groups(optimizer, impl_->live.tensors,
                     impl_->wants(trainable, impl_->replay->now(), true));
  }
  // Tensors frozen in part: the optimizer holds their compact tensors instead, with state for
  // their trainable slices only.
  impl_->masks.attach(optimizer);
  impl_->in_optimizer.clear();
  for (const auto& group : optimizer.param_groups())
    for (const auto& t : group.params()) impl_->in_optimizer.insert(t.unsafeGetTensorImpl());
  // What is frozen now holds no optimizer state.
  if (impl_->plan->options.optimizer_state == Options::OptimizerState::kDrop) {
    const Bitset& f = impl_->replay->frozen();
    for (size_t i = 0; i < impl_->live.tensors.size(); ++i)
      if (f.test(i)) compat::erase_optimizer_state(optimizer, impl_->live.tensors[i]);
  }
}

void Executor::detach_optimizer() {
  impl_->optimizer = nullptr;
  impl_->masks.forget_optimizer();
  impl_->in_optimizer.clear();
  impl_->eager_state = false;
}

bool Executor::on_epoch_begin(int64_t epoch) {
  impl_->check_epoch(epoch);
  impl_->check_optimizer_calls();
  impl_->epoch_begun = true;
  impl_->boundary(epoch);
  Time t = impl_->replay->now();
  t.epoch = epoch;
  return impl_->training_move(t);
}

void Executor::report(const std::string& metric, double value) {
  Impl& m = *impl_;
  if (m.strict) {
    const auto watched = m.monitor.metrics();
    if (!std::binary_search(watched.begin(), watched.end(), metric)) {
      std::string near = closest_match(metric, watched);
      fail_with_fix("unknown-metric",
                    "report('" + metric + "'): no stage of the plan watches this metric" +
                        (near.empty() ? "" : " (did you mean '" + near + "'?)"),
                    watched.empty()
                        ? std::string("the plan has no metric stage: report is not needed")
                        : "the plan's stages watch: " + join(watched));
    }
    if (!std::isfinite(value))
      fail_with_fix("metric-not-finite",
                    "report('" + metric + "', " + std::to_string(value) +
                        "): a metric's value must be finite",
                    "the run diverged, or the metric was not computed; call set_strict(false) to "
                    "count such a value as no improvement");
  }
  m.monitor.report(metric, value);
}

std::vector<std::string> Executor::watched_metrics() const { return impl_->monitor.metrics(); }

void Executor::on_transition(std::function<void(const Transition&)> callback) {
  impl_->on_transition = std::move(callback);
}

void Executor::set_strict(bool on) { impl_->strict = on; }

void Executor::before_optimizer_step() {
  torch_guarded("gathering the trainable slices of tensors frozen in part",
                [&] { impl_->masks.before_step(); });
}

void Executor::after_optimizer_step() {
  torch_guarded("writing back the trainable slices of tensors frozen in part",
                [&] { impl_->masks.after_step(); });
}

void Executor::step_optimizer() {
  if (!impl_->optimizer)
    fail_with_fix("no-optimizer", "step_optimizer(): no optimizer is attached",
                  "call attach_optimizer(optimizer) first");
  before_optimizer_step();
  torch_guarded("stepping the optimizer", [&] { impl_->optimizer->step(); });
  after_optimizer_step();
}

std::vector<int32_t> Executor::frozen_slices(size_t i) const {
  return impl_->masks.frozen_slices(static_cast<uint32_t>(i));
}

std::vector<int32_t> Executor::frozen_experts(size_t i) const { return frozen_slices(i); }

const at::Tensor* Executor::compact_tensor(size_t i) const {
  return impl_->masks.compact_of(static_cast<uint32_t>(i));
}

bool Executor::on_step(int64_t global_step) {
  impl_->check_step(global_step);
  if (global_step > impl_->last_step && impl_->last_step >= 0) impl_->check_optimizer_calls();
  if (global_step > impl_->last_step) impl_->last_step = global_step;
  Time t = impl_->replay->now();
  t.step = global_step;
  return impl_->training_move(t);
}

bool Executor::seek(int64_t epoch, int64_t global_step) {
  if (epoch < 0 || global_step < 0)
    fail_with_fix("time-negative",
                  "seek(" + std::to_string(epoch) + ", " + std::to_string(global_step) +
                      "): epochs and steps count from 0",
                  "pass a 0-based epoch and global step");
  impl_->epoch_begun = true;
  impl_->last_step = global_step;
  impl_->masks.forget_pending();
  // Forward, the boundary of the epoch landed on is evaluated (a plateau reported before, a
  // not_after passed); what fired stays fired when moving back.
  impl_->boundary(epoch);
  return impl_->move_to({epoch, global_step});
}

void Executor::enforce_modes() { impl_->enforce_modes(); }

CacheablePrefix Executor::cacheable_prefix() const {
  return impl_->prefix.describe(*impl_->plan, impl_->replay->state());
}

std::string ExecutorState::to_string() const {
  return "layerfreeze-state/3 " + fingerprint + " " + std::to_string(epoch) + " " +
         std::to_string(step) + (triggers.empty() ? "" : " " + triggers);
}

ExecutorState ExecutorState::parse(const std::string& text) {
  std::istringstream in(text.size() > (size_t{1} << 20) ? std::string() : text);
  std::string tag, extra;
  ExecutorState s;
  const bool read = static_cast<bool>(in >> tag >> s.fingerprint >> s.epoch >> s.step) &&
                    s.epoch >= 0 && s.step >= 0;
  if (read && tag == "layerfreeze-state/3") {
    // The rest is the metric stages' state; restore checks it against the plan.
    std::string tok;
    while (in >> tok) s.triggers += (s.triggers.empty() ? "" : " ") + tok;
    return s;
  }
  if (read && tag == "layerfreeze-state/1" && !(in >> extra)) {
    // Its fingerprint covered frozen states only: it cannot vouch for learning rates or
    // policies, so no plan of today can match it — say so rather than a mismatch.
    Diagnostics d;
    d.error("old-state",
            "the checkpoint's executor state was written by an older layerfreeze "
            "(layerfreeze-state/1), whose plan fingerprint did not cover learning rates and "
            "policies; it cannot be checked against this plan",
            {},
            {"if the strategy, its parameters and the model are unchanged, resume with "
             "executor.seek(" +
             std::to_string(s.epoch) + ", " + std::to_string(s.step) +
             ") and save a new state (layerfreeze-state/2)"});
    throw DiagnosticError(std::move(d));
  }
  if (!read || tag != "layerfreeze-state/2" || (in >> extra)) {
    Diagnostics d;
    d.error("bad-state", "not a layerfreeze executor state: '" + text.substr(0, 200) + "'", {},
            {"expected \"layerfreeze-state/3 FINGERPRINT EPOCH STEP [TRIGGERS]\""});
    throw DiagnosticError(std::move(d));
  }
  s.version = 2;
  return s;
}

ExecutorState Executor::state() const {
  ExecutorState s;
  s.fingerprint = impl_->plan->fingerprint();
  s.epoch = impl_->replay->now().epoch;
  s.step = impl_->replay->now().step;
  if (!impl_->monitor.empty()) s.triggers = impl_->monitor.to_string();
  return s;
}

void Executor::restore(const ExecutorState& s) {
  if (s.fingerprint != impl_->plan->fingerprint()) {
    Diagnostics d;
    d.error("fingerprint-mismatch",
            "the checkpoint was written under plan " + s.fingerprint + ", but this plan is " +
                impl_->plan->fingerprint(),
            {},
            {"the rules, their parameters, a learning rate, a policy or the model changed since "
             "the checkpoint (layerfreeze plan shows the fingerprint; layerfreeze diff shows "
             "what differs)"});
    throw DiagnosticError(std::move(d));
  }
  Impl& m = *impl_;
  if (!m.monitor.empty()) {
    if (s.version < 3)
      fail_with_fix("old-state",
                    "the checkpoint's executor state is a layerfreeze-state/" +
                        std::to_string(s.version) +
                        ", which does not record what the plan's metric stages saw and fired",
                    "resume from a checkpoint written with Executor::state() of this version, or "
                    "replay the run's reports (report) from its start");
    std::string why = m.monitor.restore(s.triggers);
    if (!why.empty())
      fail_with_fix("bad-state",
                    "the checkpoint's metric-stage state does not fit this plan: " + why,
                    "save the state with Executor::state().to_string() and restore it unchanged");
    m.follow_fired();
  }
  if (s.epoch < 0 || s.step < 0)
    fail_with_fix("time-negative", "restore: epochs and steps count from 0",
                  "restore a state written by Executor::state()");
  m.epoch_begun = true;
  m.last_step = s.step;
  m.masks.forget_pending();
  m.move_to({s.epoch, s.step});
}

std::vector<torch::Tensor> Executor::trainable_parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& t : impl_->live.tensors)
    if (t.requires_grad()) out.push_back(t);
  return out;
}

std::vector<std::string> Executor::frozen_names() const {
  std::vector<std::string> out;
  impl_->replay->frozen().for_each(
      [&](size_t i) { out.push_back(impl_->plan->inventory->params()[i].name); });
  return out;
}

int64_t Executor::frozen_numel() const { return impl_->plan->frozen_numel(impl_->replay->state()); }

std::vector<torch::Tensor> Executor::parameters() const { return impl_->live.tensors; }
uint64_t Executor::generation() const { return impl_->generation; }
const Plan& Executor::plan() const { return *impl_->public_plan; }

int64_t Executor::trainable_numel() const {
  return impl_->plan->inventory->total_numel() - frozen_numel();
}
int32_t Executor::num_layers() const { return impl_->plan->inventory->num_layers(); }
const std::string& Executor::fingerprint() const { return impl_->plan->fingerprint(); }
const std::vector<Diagnostic>& Executor::warnings() const { return impl_->plan->warnings; }
const Inventory& Executor::inventory() const { return *impl_->plan->inventory; }
bool Executor::is_frozen(size_t i) const { return impl_->replay->frozen().test(i); }

std::string Executor::plan_text(int64_t epochs) const {
  const Time horizon =
      impl_->plan->horizon(epochs >= 0 ? std::optional<int64_t>(epochs) : std::nullopt);
  return layerfreeze::plan_text(summarize(*impl_->plan, OptimizerKind::AdamW, horizon));
}

std::vector<torch::Tensor> trainable_parameters(torch::nn::Module& model) {
  std::vector<torch::Tensor> out;
  std::unordered_set<const void*> seen;
  for (const auto& p : model.named_parameters(true))
    if (p.value().requires_grad() && seen.insert(p.value().unsafeGetTensorImpl()).second)
      out.push_back(p.value());
  return out;
}

struct FrozenGuard::Impl {
  torch::nn::Module* model;
  std::vector<std::pair<std::string, at::Tensor>> frozen;
  std::vector<uint64_t> sums;
};

namespace {
uint64_t checksum(const at::Tensor& t) {
  at::Tensor c = t.detach().contiguous().to(at::kCPU);
  Hasher h;
  h.add_bytes(c.data_ptr(), c.numel() * c.element_size());
  return h.value();
}
}  // namespace

FrozenGuard::FrozenGuard(torch::nn::Module& model) : impl_(std::make_unique<Impl>()) {
  impl_->model = &model;
  snapshot();
}
FrozenGuard::~FrozenGuard() = default;

void FrozenGuard::snapshot() {
  torch_guarded("FrozenGuard: taking checksums of the frozen parameters", [&] { take(); });
}

void FrozenGuard::take() {
  impl_->frozen.clear();
  impl_->sums.clear();
  std::unordered_set<const void*> seen;
  for (const auto& p : impl_->model->named_parameters(true)) {
    if (p.value().requires_grad() || !seen.insert(p.value().unsafeGetTensorImpl()).second) continue;
    impl_->frozen.emplace_back(p.key(), p.value());
    impl_->sums.push_back(checksum(p.value()));
  }
}

std::vector<std::string> FrozenGuard::changed() const {
  std::vector<std::string> out;
  torch_guarded("FrozenGuard: comparing checksums", [&] {
    for (size_t i = 0; i < impl_->frozen.size(); ++i)
      if (checksum(impl_->frozen[i].second) != impl_->sums[i])
        out.push_back(impl_->frozen[i].first);
  });
  return out;
}

}  // namespace layerfreeze
