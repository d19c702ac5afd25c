// PlanSummary: what the printers show of a plan, computed once: per change point the counts,
// the memory effect for an optimizer, where backward may stop, the layer status runs and which
// rules decided what. Text, JSON and Markdown all print from this.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "analysis/cache_boundary.hpp"
#include "core/plan.hpp"
#include "layerfreeze/optimizer_kind.hpp"

namespace layerfreeze {

const char* optimizer_name(OptimizerKind k);
int optimizer_states(OptimizerKind k);  // state tensors per parameter: 0, 1, 2, 2

/// State of a group of parameters.
enum class GroupState { kFrozen, kActive, kPartial, kEmpty };
const char* group_state_name(GroupState s);  // FROZEN, ACTIVE, PARTIAL, -

/// A run of consecutive layers in the same state (the seed's "Layer 0-15: FROZEN").
struct LayerRun {
  int32_t first = 0, last = 0;
  GroupState state = GroupState::kActive;
  int64_t numel = 0;
  size_t tensors = 0;
  std::string detail;  // a mixture-of-experts layer in part frozen: "experts 8/64 train"
};

struct GroupLine {
  std::string label;   // "Vision tower", "Connector", "Embeddings", "Head", "Other"
  int32_t layers = 0;  // a tower's layers
  GroupState state = GroupState::kEmpty;
  int64_t numel = 0;
  size_t tensors = 0;
  std::string detail;  // rows cut by a row selector: "rows 32000-32009 of 32010 train"
};

struct RuleTally {
  const PlanRule* rule = nullptr;
  size_t tensors = 0;
  int64_t numel = 0;
};

struct StageSummary {
  StatePoint point;
  int64_t frozen_numel = 0, trainable_numel = 0;
  size_t frozen_tensors = 0, trainable_tensors = 0;
  int64_t grad_bytes = 0, optimizer_bytes = 0;              // for what trains
  int64_t saved_grad_bytes = 0, saved_optimizer_bytes = 0;  // by what is frozen
  // Tensors frozen in part (masked: fused experts, rows): their frozen elements count as frozen
  // above and hold neither a kept gradient nor optimizer state (the executor keeps both for the
  // trainable slices only, docs/ROWS.md); during backward each still gets its whole gradient,
  // freed at the optimizer step: masked_transient_grad_bytes.
  size_t masked_tensors = 0;
  int64_t masked_frozen_numel = 0;
  int64_t masked_transient_grad_bytes = 0;
  std::optional<int32_t> first_trainable_layer;  // of the trunk
  bool input_side_trainable = false;             // embeddings train: backward runs to the input
  // A multimodal model (docs/ARCHITECTURES.md): what trains before the trunk, in data flow. Either
  // makes the backward pass run through every trunk layer.
  bool connector_trainable = false;
  std::optional<int32_t> first_trainable_tower;  // the earliest tower with a trainable parameter
  std::optional<int32_t> first_trainable_tower_layer;  // its earliest trainable layer, if a layer
  bool tower_input_trainable = false;  // that tower trains outside its layers (embeddings, norm)
  // Compute of one training step, by the 6N-per-token rule on parameter counts (embedding
  // lookups excluded): forward 2N, input gradients 2N for everything after the earliest
  // trainable parameter in data flow, weight gradients 2N for what trains. 0 when shapes are
  // unknown.
  int64_t forward_numel = 0, backward_through_numel = 0, weight_grad_numel = 0;
  /// Terms no parameter count shows, in the same unit (2 FLOPs a token), given a sequence length
  /// (`plan --seq-len`, add_sequence_terms; docs/PERFORMANCE.md): attention's QKᵀ and AV (S × d
  /// multiply-adds each a token, in every attention layer; backward twice that where the
  /// gradient runs through) and
  /// the output layer of a head tied to the token embedding (V × d; its weight gradient when the
  /// embedding trains). 0 without a sequence length.
  int64_t extra_forward = 0, extra_backward = 0, extra_weight = 0;
  int64_t prefix_extra_forward = 0;  // the part of extra_forward inside the cacheable prefix
  double step_cost() const {         // relative to full fine-tuning (3 × forward)
    return forward_numel
               ? static_cast<double>(forward_numel + extra_forward + backward_through_numel +
                                     extra_backward + weight_grad_numel + extra_weight) /
                     full_cost()
               : 0.0;
  }
  double full_cost() const { return 3.0 * static_cast<double>(forward_numel + extra_forward); }
  bool nothing_trains = false;
  /// The frozen prefix a cache of its output could stand in for (docs/CACHE.md).
  CacheBoundary cache;
  /// Whether a cache of the frozen prefix is worth showing: something is cacheable and trains.
  bool cache_shown() const { return (cache.cacheable() || cache.tower_only()) && !nothing_trains; }
  /// step_cost() with the prefix's forward read from a cache; 0 when nothing is cacheable.
  double cached_step_cost() const {
    if (!forward_numel || !(cache.cacheable() || cache.tower_only())) return 0.0;
    return step_cost() -
           static_cast<double>(cache.saved_numel() + prefix_extra_forward) / full_cost();
  }
  std::vector<LayerRun> runs;
  std::vector<GroupLine> groups;
  std::vector<RuleTally> decided_by;  // rules that froze (or kept trainable) parameters here
};

/// One block of a block cycle (core/block_cycle.hpp) and what it keeps while it trains.
struct BlockCost {
  std::string name;  // "layer 31", "layer 0 self_attn.q_proj", "head and the rest"
  int64_t numel = 0;
  size_t tensors = 0;
  int64_t grad_bytes = 0, optimizer_bytes = 0;
};

/// A periodic stage's block cycle: its blocks in cycle order, each with its cost.
struct CycleSummary {
  const PlanStage* stage = nullptr;
  const PlanRule* rule = nullptr;
  const DynamicSet* cycle = nullptr;
  std::vector<BlockCost> blocks;
  /// Runs of blocks of one size, in the order each size first appears: "32 blocks of 202.4M
  /// parameters (layer 0, layer 1, …): gradients + optimizer state 1.2 GB each".
  struct SizeGroup {
    std::vector<size_t> blocks;
    int64_t numel = 0, bytes = 0;
  };
  std::vector<SizeGroup> by_size() const;
};

struct PlanSummary {
  const CompiledPlan* plan = nullptr;
  OptimizerKind optimizer = OptimizerKind::AdamW;
  Time horizon;
  bool truncated = false;
  bool shapes_known = true;  // the inventory's, computed once (a pass over every parameter)
  std::vector<StageSummary> stages;
  std::vector<CycleSummary> cycles;  // the plan's block cycles, in stage order
  /// A dataset for the cache figures (`plan --cache-samples N --seq-len S`); 0: none given.
  int64_t cache_samples = 0, seq_len = 0;
  bool has_tied_head = false;  // add_sequence_terms counted a head tied to the token embedding
  /// The data-parallel lint (`plan --distributed`), printed as its own JSON key when set.
  std::optional<std::vector<Diagnostic>> distributed;

  /// What the printers list as warnings: the plan's, then the distributed lint's.
  std::vector<const Diagnostic*> warnings() const {
    std::vector<const Diagnostic*> all;
    for (const auto& w : plan->warnings) all.push_back(&w);
    if (distributed)
      for (const auto& w : *distributed) all.push_back(&w);
    return all;
  }
};

/// Printed timelines stop after this many change points (a periodic schedule over a long
/// horizon); the summary says it was cut.
constexpr size_t kMaxPrintedPoints = 1000;

/// Summarises `plan` up to `horizon` (epochs, steps; -1 = no limit in that unit).
PlanSummary summarize(const CompiledPlan& plan, OptimizerKind optimizer, const Time& horizon);
/// Adds each stage's sequence-length and vocabulary terms (StageSummary::extra_forward …) for
/// samples of `seq_len` tokens, and sets PlanSummary::seq_len.
void add_sequence_terms(const CompiledPlan& plan, int64_t seq_len, PlanSummary& summary);

/// The layer status table of one state, in the seed's format (print_layer_status).
std::string layer_status_table(const Inventory& inv, const Bitset& frozen, bool show_all);
/// The same, with the expert slices of fused tensors (a layer can be PARTIAL by experts).
std::string layer_status_table(const Inventory& inv, const Selection& frozen,
                               const SliceTable& slices, bool show_all);

/// The trunk's layers in `frozen`, one run per layer when `one_per_layer`, else runs of
/// consecutive layers in the same state.
std::vector<LayerRun> layer_runs(const Inventory& inv, const Selection& frozen,
                                 const SliceTable& slices, bool one_per_layer);
/// The groups outside the trunk's layers, in data-flow order: towers, connectors, embeddings,
/// head, other (embeddings and head always; connectors and other when the model has them).
std::vector<GroupLine> group_lines(const Inventory& inv, const Bitset& frozen);
/// The same, with tensors cut by rows (PARTIAL, with the rows that train).
std::vector<GroupLine> group_lines(const Inventory& inv, const Selection& frozen,
                                   const SliceTable& slices);
/// "rows 32000-32009 of 32010 train" for row-cut tensors of `cut` frozen in part in `frozen`
/// ("" when none; "3 tensors cut by rows" when they differ).
std::string rows_detail(const std::vector<uint32_t>& cut, const Selection& frozen,
                        const SliceTable& slices);

/// "epoch 3", "step 40", "epoch 1 · step 100".
std::string time_text(const Time& t, bool uses_steps);

}  // namespace layerfreeze
