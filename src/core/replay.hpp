// Replay: a plan's time, applied. It follows training time through a plan — the state at the
// start, each change point on the way forward in order, one jump backward (a resumed run) — and
// hands every change to a StateSink. The LibTorch executor is one sink (it flips requires_grad
// and keeps an optimizer consistent); a recording sink is the dry run the core tests use; the
// seed API freezes through the executor's sink. The side effects live in the sinks; the time
// arithmetic lives here, once.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "core/plan.hpp"

namespace layerfreeze {

/// Receives the changes of state of one change point: `freeze(i)` / `unfreeze(i)` for every
/// parameter whose state changes (inventory indices, ascending within each kind), then
/// `changed(at, frozen)` once. A sink may throw from freeze/unfreeze: the replay then calls
/// `abort()` (undo this change point's calls) and stays at the last completed change point.
class StateSink {
 public:
  virtual ~StateSink() = default;
  virtual void freeze(uint32_t i) = 0;
  virtual void unfreeze(uint32_t i) = 0;
  /// A change point's parameters in one call each (a sink may do them without a call apiece).
  virtual void freeze_all(const std::vector<uint32_t>& indices) {
    for (uint32_t i : indices) freeze(i);
  }
  virtual void unfreeze_all(const std::vector<uint32_t>& indices) {
    for (uint32_t i : indices) unfreeze(i);
  }
  /// A fused expert tensor that is not frozen whole: `frozen_experts` are the experts (slices
  /// along its first dimension) that must not move; empty: all of it trains. Called after
  /// freeze/unfreeze, for every such tensor whose slices changed (at the start: every one frozen
  /// in part).
  virtual void remask(uint32_t i, const std::vector<int32_t>& frozen_experts) {
    (void)i;
    (void)frozen_experts;
  }
  virtual void changed(const Time& at, const Bitset& frozen) {
    (void)at;
    (void)frozen;
  }
  virtual void abort() {}
};

class Replay {
 public:
  explicit Replay(const CompiledPlan& plan) : plan_(&plan), cursor_(plan) {}

  /// The state at epoch 0, step 0: every parameter gets one call, freeze or unfreeze (the sink
  /// does not know the module's state before).
  void start(StateSink& sink);
  /// Moves to `t`. Forward, every change point on the way is applied in order (so a sink sees
  /// what an uninterrupted run would: optimizer groups added stage by stage); backward, one jump
  /// to the state at `t`. Returns true when the frozen set changed. A call where nothing can
  /// change costs a few integer comparisons.
  bool move_to(const Time& t, StateSink& sink);

  /// Follows `plan` from now on: the same plan with its metric stages placed where they fired
  /// (CompiledPlan::placed). The state held stays; the next move applies what differs.
  void rebind(const CompiledPlan& plan) {
    plan_ = &plan;
    cursor_.rebind(plan);
  }

  const Time& now() const { return now_; }
  const Bitset& frozen() const { return cursor_.frozen(); }
  const Selection& state() const { return cursor_.state(); }
  const CompiledPlan& plan() const { return *plan_; }

  /// The first change point after `cur` and not after `t`, if any: the nearer of the next epoch
  /// threshold and the next step threshold (ordered by steps_per_epoch when both exist).
  std::optional<Time> next_point(const Time& cur, const Time& t) const;

 private:
  // Seeks the cursor to `t` and hands what changed to the sink; on a sink's exception, aborts
  // and puts the cursor back where it was.
  bool apply(const Time& t, StateSink& sink);
  // Hands the masks of the fused tensors `which` (those not frozen whole) to the sink.
  void remask(const Bitset& frozen, const std::vector<uint32_t>& which, StateSink& sink);

  const CompiledPlan* plan_;
  PlanCursor cursor_;
  Time now_{0, 0};
};

/// `a` is at or before `b` in every unit both know (-1: unknown).
bool at_or_before(const Time& a, const Time& b);

/// A sink that records what it is told: the dry run of an executor.
class RecordingSink : public StateSink {
 public:
  struct Change {
    Time at;
    std::vector<uint32_t> frozen, unfrozen;
    std::vector<std::pair<uint32_t, std::vector<int32_t>>> masks;
  };
  explicit RecordingSink(size_t n) : state_(n) {}
  void freeze(uint32_t i) override;
  void unfreeze(uint32_t i) override;
  void remask(uint32_t i, const std::vector<int32_t>& frozen_experts) override;
  void changed(const Time& at, const Bitset& frozen) override;
  void abort() override;

  const std::vector<Change>& changes() const { return changes_; }
  /// The state the sink holds: what a module would, after the calls it received.
  const Bitset& state() const { return state_; }
  /// The frozen experts of each fused tensor frozen in part now.
  const std::map<uint32_t, std::vector<int32_t>>& masks() const { return masks_; }

 private:
  Bitset state_;
  std::map<uint32_t, std::vector<int32_t>> masks_;
  // The masks a pending change replaced (nullopt: none), for abort().
  std::vector<std::pair<uint32_t, std::optional<std::vector<int32_t>>>> mask_undo_;
  Change pending_;
  std::vector<Change> changes_;
};

}  // namespace layerfreeze
