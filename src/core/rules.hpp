// The rules AST: a freezing strategy as written, with the file:line:col of every part. It does
// not depend on a model or on parameter values; the compiler binds both.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/expr.hpp"
#include "core/layer_discovery.hpp"
#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

enum class Action { kFreeze, kUnfreeze };
inline const char* action_name(Action a) { return a == Action::kFreeze ? "freeze" : "unfreeze"; }

/// What a rule points at (docs/RULES.md, "Selectors").
struct Selector {
  enum class Kind {
    kAll,           // every parameter
    kRole,          // embeddings | head | layers | other
    kLayers,        // layer indices: slices, lists, first/last N, ratios (optionally in one stack)
    kStack,         // every layer of a named stack
    kRegex,         // RE2 full match on any name
    kModuleType,    // RE2 full match on the owning module's short type name
    kLeaf,          // the last name component ("bias")
    kAnyOf,         // union
    kAllOf,         // intersection
    kRandomLayers,  // `count` layers drawn by (seed, period) from the layers of `from`
    kExperts,       // routed experts by index (or an ESFT expert config), optionally in `layers`
    kExpertPart,    // routers | shared_experts
    kTokens,        // rows of the token embeddings and the output layer, by token id
    kRows,          // rows (first dimension) of the tensors another selector picks (`of`)
    kBlockCycle,    // one block of a partition per period, in a cycle (block-coordinate descent)
  };
  enum class LayerForm { kIndices, kFirst, kLast, kFirstRatio, kLastRatio };

  Kind kind = Kind::kAll;
  SourceLoc loc;
  Role role = Role::kOther;
  LayerForm layer_form = LayerForm::kIndices;
  std::vector<Expr> indices;       // kIndices: ints or slice strings ("0:16", "-4:")
  Expr amount;                     // first/last N, ratio; kRandomLayers: count;
                                   // kBlockCycle: layers per block
  Expr seed;                       // kRandomLayers, kBlockCycle
  Expr stack;                      // kLayers restricted to a stack; kStack: the name
  Expr strings;                    // kRegex, kModuleType, kLeaf: a string or a list of strings;
                                   // kBlockCycle: `layers` or `modules` (empty: `children`
                                   // are the blocks)
  Expr case_sensitive;             // kRegex
  std::vector<Selector> children;  // kAnyOf, kAllOf, kRandomLayers (`from`, 0 or 1),
                                   // kExperts (the `layers` beside it, 0 or 1), kRows
                                   // (`of`, 1), kBlockCycle (`from`, 0 or 1; or the blocks)
  std::vector<Expr> experts;       // kExperts: ints or slice strings; empty: every expert
  std::vector<Expr> rows;          // kTokens, kRows: ints or slice strings
  Expr from;                       // kExperts: the path of an ESFT expert config
  ExpertPart part = ExpertPart::kNone;  // kExpertPart
  Expr order, start;                    // kBlockCycle: ascending|descending|reshuffle|fixed; first
  Expr embeddings_block, head_block;    // kBlockCycle: bools, a first / last block (BAdam's)
  std::vector<Selector> except;         // 0 or 1: subtracted from what this selects
  std::string text;                     // compact one-line form, for plans and tests
};

/// `freeze: SEL` or `unfreeze: SEL`, optionally conditional.
struct Rule {
  Action action = Action::kFreeze;
  Selector selector;
  Expr when;  // empty: always
  SourceLoc loc;
  std::string text;  // "freeze layers[0:16]"
};

/// "Fire when a reported metric stops improving" (docs/RULES.md, "Metric triggers"): evaluated
/// at epoch boundaries on the values a trainer reports, bounded by `not_before` / `not_after`
/// (epochs; in a progressive stage, epochs since the previous group opened).
struct MetricTrigger {
  std::string metric;  // the name the trainer reports ("val_loss")
  Expr metric_expr;    // instead, when the name is a `${...}` expression (a preset's parameter)
  SourceLoc loc;       // of `plateau:`'s value
  Expr mode;           // "min" (default) or "max"
  Expr patience;       // reports without improvement (default 3, Lightning's EarlyStopping)
  Expr min_delta;      // an improvement is larger than this (default 0)
  Expr not_before, not_after;  // null: no bound
};

/// A point in training time: an epoch or a global step (both 0-based), or a metric's plateau.
struct Trigger {
  enum class Unit { kEpoch, kStep };
  Unit unit = Unit::kEpoch;
  Expr value;
  SourceLoc loc;
  std::optional<MetricTrigger> metric;  // set: `value` is unused, the unit is epochs
};
inline const char* unit_name(Trigger::Unit u) {
  return u == Trigger::Unit::kEpoch ? "epoch" : "step";
}

/// A change of state over time.
struct Stage {
  enum class Kind {
    kAt,           // once, at a trigger
    kEvery,        // periodically (LISA): rules re-evaluated each period, on the state before it
    kProgressive,  // opens (or closes) one more group of layers at a time
  };
  Kind kind = Kind::kAt;
  SourceLoc loc;
  std::string name;
  Expr when;
  Trigger at;               // kAt: the trigger; kEvery/kProgressive: the start
  Trigger period;           // kEvery: K steps/epochs; kProgressive with `every`
  std::vector<Rule> rules;  // kAt, kEvery
  // kProgressive
  Action action = Action::kUnfreeze;
  Selector selector;  // what is grouped (default: layers, with `other` attached)
  bool top_down = true;
  Expr group_size;              // layers per group (default 1)
  std::optional<Trigger> over;  // spread all groups evenly over this span
  bool has_every = false;
  // The param group of the tensors this stage unfreezes: an absolute learning rate, or a scale of
  // the optimizer's (instead of options.unfreeze_lr_scale). Empty: not given.
  Expr lr, lr_scale;
};

/// A declared, typed parameter a user can override with `--set`.
struct ParamDecl {
  enum class Type { kInt, kFloat, kBool, kString, kStrings };
  std::string name;
  Type type = Type::kInt;
  bool required = false;  // no default
  Value default_value;    // null when nullable and absent
  bool nullable = false;
  std::optional<double> min, max;
  std::vector<std::string> choices;  // kString: the words it may take (empty: any)
  std::string doc;
  SourceLoc loc;
};
const char* param_type_name(ParamDecl::Type t);

/// Executor policies a strategy carries (docs/RULES.md, "Options").
struct Options {
  enum class BatchNorm { kUnchanged, kEvalWhenFrozen };
  enum class OptimizerState { kDrop, kKeep };
  /// `frozen_prefix: eval`: every module of the cacheable frozen prefix (docs/CACHE.md) — its
  /// dropout and BatchNorm included — is held in eval mode, so the prefix is a pure function of
  /// the sample and a cache of its output is exact.
  enum class FrozenPrefix { kUnchanged, kEval };
  BatchNorm batchnorm = BatchNorm::kUnchanged;
  FrozenPrefix frozen_prefix = FrozenPrefix::kUnchanged;
  OptimizerState optimizer_state = OptimizerState::kDrop;
  Expr unfreeze_lr_scale;  // default 1.0
  Expr lr_decay;           // discriminative LR: scale 1/decay^(depth from the top); default 1.0
  Expr steps_per_epoch;    // needed when epoch and step triggers mix
  SourceLoc loc;
};

/// A whole strategy: the merge of a file and everything it extends.
struct StrategyDef {
  int version = 1;
  std::string name;
  std::string description;
  std::string origin;  // "preset:lp_lora" or a path
  std::vector<ParamDecl> params;
  Scope bound;  // values fixed by `extends: ... with:`
  Options options;
  DiscoveryPatterns discovery;  // overrides from the file
  bool discovery_replace = false;
  std::vector<Rule> rules;    // initial rules, in order
  std::vector<Stage> stages;  // in file order

  const ParamDecl* find_param(const std::string& n) const;
};

}  // namespace layerfreeze
