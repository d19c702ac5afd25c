// CompiledPlan: a strategy compiled against one model. Every rule resolved to a set of parameters,
// the stages in time order, the executor options evaluated, warnings, and a fingerprint. The state
// at any time is a pure function of the plan and (epoch, step).
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/bitset.hpp"
#include "core/metric_triggers.hpp"
#include "core/rules.hpp"
#include "layerfreeze/inventory.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze {

/// The slices of a model a selector can cut through, along a tensor's first dimension: one bit
/// per routed expert of every fused expert tensor (a tensor that holds all of a layer's experts
/// along its first dimension, docs/EXPERTS.md), and one bit per row of every tensor a row
/// selector (`tokens`, `rows`) names (docs/ROWS.md). A tensor's own bit in a parameter set means
/// "all its slices"; a set keeps the two consistent (normalize). Fused tensors come first, in
/// inventory order, then the row tensors in inventory order.
struct SliceTable {
  enum class Kind : uint8_t { kExperts, kRows };
  /// At most this many slices in all (a bit each in every set a plan keeps): a row selector on
  /// tensors with more rows than this is refused (`too-many-rows`).
  static constexpr size_t kMaxSlices = size_t{1} << 22;

  std::vector<uint32_t> params;  // the sliced tensors
  std::vector<size_t> first;     // first slice of params[k]; first[k + 1] - first[k] slices
  std::vector<int32_t> slot;     // per inventory parameter: its k in `params`, or -1
  std::vector<Kind> kinds;       // per k

  /// The fused expert tensors of `inv`.
  void build(const Inventory& inv);
  /// Adds parameter i, cut into `rows` rows (nothing when it is in the table already).
  void add_rows(uint32_t i, int64_t rows);
  size_t size() const { return first.empty() ? 0 : first.back(); }
  bool empty() const { return params.empty(); }
  bool has_rows() const {
    return std::find(kinds.begin(), kinds.end(), Kind::kRows) != kinds.end();
  }
  /// How many slices params[k] is cut into (experts or rows).
  int64_t slices_of(size_t k) const { return static_cast<int64_t>(first[k + 1] - first[k]); }
  /// Whether parameter i is cut into rows by a row selector (not a fused expert tensor).
  bool rows(uint32_t i) const {
    return i < slot.size() && slot[i] >= 0 && kinds[static_cast<size_t>(slot[i])] == Kind::kRows;
  }
  /// The slices of every tensor `params` selects whole.
  Bitset expand(const Bitset& params) const;
  /// Sets a sliced tensor's bit in `params` exactly when all its slices are in `slices`.
  void normalize(Bitset& params, const Bitset& slices) const;
  /// How many of parameter i's slices `slices` holds; -1 when i is not sliced.
  int64_t count(uint32_t i, const Bitset& slices) const;
  /// The slice indices (experts, rows) of parameter i in `slices`, ascending; with `in` false,
  /// those not in `slices` (the slices that train, when `slices` is a frozen set).
  std::vector<int32_t> indices_in(uint32_t i, const Bitset& slices, bool in = true) const;
};

/// What a rule selects, or what is frozen: whole tensors and expert slices of fused tensors.
struct Selection {
  Bitset params;  // a fused tensor's bit: all its slices
  Bitset slices;  // SliceTable order
  bool operator==(const Selection& o) const { return params == o.params && slices == o.slices; }
  bool operator!=(const Selection& o) const { return !(*this == o); }
  /// Parameter i is partly in the selection: a fused tensor with some of its slices, not all.
  bool partial(uint32_t i, const SliceTable& t) const {
    int64_t c = t.count(i, slices);
    return c > 0 && !params.test(i);
  }
};

/// The order in which a block cycle visits its blocks (core/block_cycle.hpp).
enum class CycleOrder { kAscending, kDescending, kReshuffle, kFixed };

/// One block of a block cycle: its whole tensors (inventory indices, ascending) and, for a listed
/// block that cuts tensors (rows, experts), its slices. Sparse: a cycle of every module of a
/// 100,000-tensor model holds each index once.
struct CycleBlock {
  std::vector<uint32_t> params;
  std::optional<Bitset> cut;  // SliceTable order; absent: the slices of `params`
};

/// A selector that varies by period (random_layers, block_cycle); a static one is a single leaf.
struct DynamicSet {
  enum class Op { kLeaf, kUnion, kIntersect, kMinus, kRandom, kCycle };
  Op op = Op::kLeaf;
  Bitset leaf;
  std::vector<DynamicSet> kids;
  // kRandom: draw `count` layers of `pool` by (seed, period); select their parameters in `mask`.
  std::vector<int32_t> pool;
  int64_t count = 0;
  uint64_t seed = 0;  // kRandom, kCycle (reshuffle)
  Bitset mask;
  // kCycle: one of `blocks` per period, visited in `order` from `start` (a permutation drawn per
  // cycle by (seed, cycle) for reshuffle); `block_names` as a plan shows them ("layer 31").
  std::vector<CycleBlock> blocks;
  std::vector<std::string> block_names;
  CycleOrder order = CycleOrder::kAscending;
  int64_t start = 0;

  Bitset slices;  // kLeaf: the expert slices it selects (SliceTable order)

  bool is_static() const { return op == Op::kLeaf; }
  Selection eval(int64_t period, const Inventory& inv, const SliceTable& table) const;
  /// The first block cycle in this set (depth first), or nullptr.
  const DynamicSet* cycle() const;
  /// kCycle: block `b` as a selection over `n_params` tensors.
  Selection block(size_t b, size_t n_params, const SliceTable& table) const;
};

/// Where a decision comes from: the rule's text and location.
struct Provenance {
  std::string text;  // "freeze layers(first_ratio=0.5)"
  SourceLoc loc;
  std::string where() const;  // "preset:lp_lora:20:5"
};

struct PlanRule {
  Action action = Action::kFreeze;
  DynamicSet set;
  Provenance prov;
  std::vector<uint32_t> partial_ties;  // tied tensors it selects through only some names
};

/// A stage fixed in time, in the order stages apply.
struct PlanStage {
  Trigger::Unit unit = Trigger::Unit::kEpoch;
  int64_t at = 0;      // epoch or step at which it starts
  int64_t key = 0;     // ordering key (steps when epochs and steps mix)
  int64_t period = 0;  // > 0: periodic, re-evaluated every `period` units from `at`
  std::string label;   // "stage at epoch 3", "progressive group 2/12", "every 20 steps"
  SourceLoc loc;
  std::vector<PlanRule> rules;
  // The param group of what this stage unfreezes: an absolute lr, or a scale of the optimizer's.
  std::optional<double> group_lr, group_lr_scale;
  int32_t watch = -1;       // a metric stage: its MetricWatch id (`at` is where it is placed)
  uint32_t file_order = 0;  // ties of `key` keep it

  bool fires(const Time& t) const {
    return (unit == Trigger::Unit::kEpoch ? t.epoch : t.step) >= at;
  }
  /// The block cycle of its rules (the first), if any.
  const DynamicSet* cycle() const {
    for (const auto& r : rules)
      if (const DynamicSet* c = r.set.cycle()) return c;
    return nullptr;
  }
  int64_t period_at(const Time& t) const {
    int64_t now = unit == Trigger::Unit::kEpoch ? t.epoch : t.step;
    return period > 0 ? (now - at) / period : 0;
  }
};

/// Executor options, evaluated.
struct PlanPolicies {
  Options::BatchNorm batchnorm = Options::BatchNorm::kUnchanged;
  Options::FrozenPrefix frozen_prefix = Options::FrozenPrefix::kUnchanged;
  Options::OptimizerState optimizer_state = Options::OptimizerState::kDrop;
  double unfreeze_lr_scale = 1.0;
  double lr_decay = 1.0;
  std::optional<int64_t> steps_per_epoch;
};

/// One change of state on the timeline.
struct StatePoint {
  Time at;
  std::vector<std::string> causes;  // labels of the stages that fired here
  Bitset frozen;
  Bitset frozen_slices;  // SliceTable order
  std::vector<uint32_t> newly_frozen, newly_unfrozen;
  std::vector<uint32_t> remasked;  // fused tensors whose frozen slices changed, not frozen whole
  int64_t cycle = -1;  // a block cycle's stage fired here: its cycle number (core/block_cycle.hpp)
};

/// A metric-triggered stage as a dry run shows it.
struct MetricStageView {
  const MetricWatch* watch = nullptr;
  FireWindow window;  // with nothing fired: earliest and latest (-1: no bound)
  int64_t at = -1;    // where this plan places it (-1: it waits for a plateau)
  enum class Placed { kFired, kBound, kLatest, kWaiting } placed = Placed::kWaiting;
  std::optional<double> best;  // fired: the metric's best value then
  /// "at epoch 3 (plateau, best 0.9)", "at epoch 6 (not_after)", "at epoch 6 at the latest (no
  /// plateau given)", "waits for a plateau (no not_after)".
  std::string placement() const;
  /// "epochs 1–6", "from epoch 2, no bound".
  std::string window_text() const;
};

class CompiledPlan {
 public:
  std::shared_ptr<const Inventory> inventory;
  std::string name, origin, description;
  Scope params;
  PlanPolicies options;
  std::vector<PlanRule> initial;
  std::vector<PlanStage> stages;  // sorted by key, file order for ties
  std::vector<Diagnostic> warnings;
  bool uses_epochs = false, uses_steps = false;
  SliceTable slices;  // the fused expert tensors' slices; empty for most models
  // Metric-triggered stages (core/metric_triggers.hpp): their definitions by id, and the stages
  // themselves by id. `stages` holds those placed on the timeline — where they fired (`fired`),
  // else at the latest their window allows; one still waiting for a plateau with no bound is
  // not in `stages`.
  std::vector<MetricWatch> watches;
  std::vector<PlanStage> watched;
  std::vector<Firing> fired;

  /// This plan with the metric stages placed where `fired` says (and the others at the latest
  /// their windows then allow). Its identity — canonical text, fingerprint — is this plan's:
  /// the definition, not one run's history.
  CompiledPlan placed(const std::vector<Firing>& fired) const;
  /// Each metric stage, by id: its window and where this plan places it.
  std::vector<MetricStageView> metric_stages() const;

  /// Frozen tensors and slices by the initial rules alone (no stage applied).
  const Selection& initial_state() const { return initial_state_; }
  /// Frozen parameters at `t` (whole tensors).
  Bitset frozen_at(const Time& t) const { return state_at(t).params; }
  /// Frozen tensors and expert slices at `t`.
  Selection state_at(const Time& t) const;
  /// Frozen elements of `s`: whole tensors and the frozen share of partly frozen fused ones.
  int64_t frozen_numel(const Selection& s) const;
  /// Whether parameter i is partly frozen in `s` (a masked fused tensor).
  bool partial(const Selection& s, uint32_t i) const { return s.partial(i, slices); }
  /// For each parameter, the rule that decided its state at `t` (nullptr: trainable by
  /// default).
  std::vector<const PlanRule*> deciders_at(const Time& t) const;
  /// The change points from the start up to (not including) `horizon`; periodic schedules are
  /// listed period by period, at most `max_points`.
  std::vector<StatePoint> timeline(const Time& horizon, size_t max_points = 10000,
                                   bool* truncated = nullptr) const;
  /// The earliest epoch and step (each, -1 for none) at which the state may next change after
  /// `t`: a per-step query compares against these two numbers.
  Time next_change(const Time& t) const;
  /// The last trigger in each unit (periodic stages count ten periods, a block cycle one whole
  /// cycle and the first period of the next, up to 64 blocks), 0 when none.
  Time last_trigger() const;
  /// How far a plan is shown: up to `epochs` / `steps` when given, else just past the last
  /// trigger (every static stage and a few periods); the other unit follows through
  /// steps_per_epoch when the plan has one. The one horizon of the CLI, the executor and the API.
  Time horizon(std::optional<int64_t> epochs = std::nullopt,
               std::optional<int64_t> steps = std::nullopt) const;
  Time default_horizon() const { return horizon(); }
  /// The hash of canonical(): equal exactly when two plans run the same.
  const std::string& fingerprint() const { return fingerprint_; }
  /// The canonical plan's text (core/canonical_plan.hpp): what a lock stores and a diff reads.
  const std::string& canonical() const { return canonical_; }
  /// Discriminative learning-rate scale of parameter `i`: 1 / lr_decay^depth, depth counted
  /// from the head (0) through the layers top-down to the embeddings (L + 1).
  double lr_scale(size_t i) const;
  /// The learning rate of the param group parameter `i` joins when `decider` (a rule of the plan,
  /// from deciders_at) unfreezes it, given the optimizer's `base_lr`: the deciding stage's `lr`,
  /// else base_lr × (the stage's `lr_scale`, else options.unfreeze_lr_scale) × lr_scale(i).
  double group_lr(size_t i, const PlanRule* decider, double base_lr) const;
  /// The stage a rule of this plan belongs to; nullptr for an initial rule (or none).
  const PlanStage* stage_of(const PlanRule* rule) const;
  /// Whether some stage sets `lr` or `lr_scale` (else group_lr needs no decider).
  bool has_stage_lr() const { return has_stage_lr_; }

  // Built by the compiler.
  void finalize();

 private:
  // Puts the metric stages on the timeline for `fired` and sorts `stages`.
  void place(const std::vector<Firing>& fired);
  // The states after each stage (prefix_) and what they need.
  void build_prefix();
  Selection initial_state_;
  std::vector<Selection> prefix_;  // prefix_[j]: state after initial rules and static stages [0, j)
  bool has_periodic_ = false, has_stage_lr_ = false;
  std::string canonical_, fingerprint_;
};

/// PlanCursor follows training time through a plan, for executors: between state changes a
/// query is four integer comparisons; at a change it computes the new frozen set and what
/// changed. Seeking backwards (a resumed run) recomputes, so any order of times is correct.
class PlanCursor {
 public:
  explicit PlanCursor(const CompiledPlan& plan) : plan_(&plan) {}

  /// Whether the state at `t` may differ from the one last computed.
  bool stale(const Time& t) const {
    return !valid_ || t.epoch < last_.epoch || t.step < last_.step ||
           (next_.epoch >= 0 && t.epoch >= next_.epoch) ||
           (next_.step >= 0 && t.step >= next_.step);
  }
  /// Moves to `t`; returns true when the frozen set changed. `frozen()`, `newly_frozen()` and
  /// `newly_unfrozen()` then describe it.
  bool seek(const Time& t);
  /// Follows `plan` from now on (the same plan with its metric stages placed anew): the state
  /// held stays, and the next seek compares the new plan's state with it.
  void rebind(const CompiledPlan& plan) {
    plan_ = &plan;
    next_ = {0, 0};
  }

  const Bitset& frozen() const { return state_.params; }
  const Selection& state() const { return state_; }
  const std::vector<uint32_t>& newly_frozen() const { return newly_frozen_; }
  const std::vector<uint32_t>& newly_unfrozen() const { return newly_unfrozen_; }
  /// Fused tensors whose frozen slices changed and that are not frozen whole now (their masks).
  const std::vector<uint32_t>& remasked() const { return remasked_; }

 private:
  const CompiledPlan* plan_;
  bool valid_ = false;
  Time last_{0, 0}, next_{-1, -1};
  Selection state_;
  std::vector<uint32_t> newly_frozen_, newly_unfrozen_, remasked_;
};

}  // namespace layerfreeze
