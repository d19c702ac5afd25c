// The selector resolver: binds every selector of a strategy to the set of parameters it picks
// on one model, with one set of parameter values (docs/RULES.md, "Selectors"). All regexes of a
// strategy are matched in one RE2::Set pass over the names; layer selectors count the trunk's
// layers; random_layers stays dynamic (drawn per period).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/layer_discovery.hpp"
#include "core/plan.hpp"
#include "core/regex.hpp"
#include "core/rules.hpp"

namespace layerfreeze {

// Resolves selectors against one inventory with one set of parameter values.
class Resolver {
 public:
  /// `slices`: the model's fused expert tensors (a selector may cut through them).
  Resolver(const Inventory& inv, const SliceTable& slices, const Scope& scope, Diagnostics& diags);
  /// Parameters the caller bound (`--set`, PlanOptions): a file path taken from one of them alone
  /// is the caller's to choose; any other path a rules file gives is confined
  /// (core/file_access.hpp).
  void trust_parameters(std::set<std::string> names) { trusted_ = std::move(names); }

  // Pass 1: evaluate regex patterns of every selector and register them.
  void collect(const Selector& s);

  // One RE2::Set per case mode, one pass over every name.
  void match_all();

  DynamicSet resolve(const Selector& s);

  /// Pass 2, before any rule is resolved: the tensors the row selectors (`tokens`, `rows`) among
  /// `roots` cut, added to `table` (the table this resolver was built on) with their row
  /// counts. Reports a model without token embeddings, a tensor of unknown shape, too many rows.
  void add_row_tensors(const std::vector<const Selector*>& roots, SliceTable& table);

  /// The model's token rows: the token embedding (the 2-D embeddings tensor with the most rows)
  /// and every output-layer tensor with as many rows; a tied head is the embedding itself.
  struct TokenRows {
    std::vector<uint32_t> tensors;  // inventory order
    int64_t vocab = 0;              // rows; 0: the model has no token embedding
    uint32_t embedding = 0;
  };
  const TokenRows& token_rows();

  // Whether `s` selects parameter `i` under its name number `k` (0: canonical, then aliases).
  // Tied tensors are few; this runs for them only.
  bool matches_name(const Selector& s, size_t i, size_t k);

  DynamicSet resolve_uncached(const Selector& s);

  std::optional<int64_t> eval_int(const Expr& e, const std::string& what);
  std::optional<double> eval_number(const Expr& e, const std::string& what);
  bool eval_bool(const Expr& e, bool fallback);
  std::vector<std::string> eval_strings(const Expr& e);
  /// Whether `e` evaluates to null (a nullable parameter left unset); errors are left to the
  /// typed evaluations.
  bool is_null(const Expr& e);

  const Bitset& role_set(Role r) const { return roles_[static_cast<int>(r)]; }

 private:
  std::set<std::string> trusted_;
  std::string layer_count_text() const {
    return inv_.facts().source + " has " + describe_layers(inv_);
  }
  DynamicSet leaf(Bitset b);

  // The layers [begin, end) of the whole model, or of one stack.
  struct Range {
    int32_t begin = 0, end = 0;
    std::string what;
  };

  // Without a stack: the trunk's layers. A stack is named by its container, a component of it,
  // or (a multimodal model's tower) the tower's modality or a component of its root: then every
  // layer of the towers it names.
  std::optional<Range> stack_range(const Expr& stack_expr);
  static std::string t_or_towers(const std::string& roots);

  Bitset layers_to_params(const std::vector<int32_t>& layers);

  bool require_layers(const Selector& s);

  std::optional<std::vector<int32_t>> layer_list(const Selector& s);
  /// The `layers: [3, "-4:", ...]` form: indices and slices of `range`, sorted, each once.
  std::optional<std::vector<int32_t>> indexed_layers(const Selector& s, const Range& range,
                                                     const std::string& count_text) {
    return indexed(s.indices, range, count_text, "layer");
  }
  /// Indices and slices (`noun`: "layer", "expert") of `range`, sorted, each once.
  std::optional<std::vector<int32_t>> indexed(const std::vector<Expr>& items, const Range& range,
                                              const std::string& count_text, const char* noun);

  DynamicSet resolve_kind(const Selector& s);
  DynamicSet resolve_module_type(const Selector& s);
  DynamicSet resolve_leaf(const Selector& s);
  DynamicSet resolve_set_op(const Selector& s);
  DynamicSet resolve_random(const Selector& s);
  DynamicSet resolve_cycle(const Selector& s);  // core/block_cycle.cpp
  DynamicSet resolve_experts(const Selector& s);
  DynamicSet resolve_expert_part(const Selector& s);
  DynamicSet resolve_rows(const Selector& s);
  /// The tensors a row selector cuts: the token rows, or what its `of` picks.
  std::vector<uint32_t> row_targets(const Selector& s);
  /// The experts each layer's selection keeps: from an ESFT config, or one list for every layer.
  std::optional<std::map<int32_t, std::vector<int32_t>>> experts_by_layer(const Selector& s);

  const Inventory& inv_;
  const SliceTable& slices_;
  const Scope& scope_;
  Diagnostics& diags_;
  size_t n_;
  Bitset roles_[kNumRoles];
  std::vector<std::pair<std::string, bool>> patterns_;
  std::map<std::pair<std::string, bool>, int> pattern_ids_;
  std::map<const Selector*, std::vector<int>> regex_of_;
  std::vector<Bitset> pattern_sets_;
  std::map<const Selector*, Bitset> cache_;
  std::map<std::pair<std::string, bool>, std::unique_ptr<RE2>> name_res_;  // matches_name's
  std::optional<TokenRows> token_rows_;
};

}  // namespace layerfreeze
