// InventoryBuilder: the one way to change an Inventory's parameters (model sources fill them,
// layer discovery annotates them). An Inventory is read-only to everyone else, so its parameters
// and its private name index can never disagree (a `push_back` on a public vector once left a
// name that `find` did not know).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

class InventoryBuilder {
 public:
  /// Changes `inv` in place; `inv` must outlive the builder.
  explicit InventoryBuilder(Inventory& inv) : inv_(inv) {}
  /// Rebuilds the name index when params() handed out the parameters to change.
  ~InventoryBuilder() { done(); }
  InventoryBuilder(const InventoryBuilder&) = delete;
  InventoryBuilder& operator=(const InventoryBuilder&) = delete;

  /// The inventory being built: its descriptive fields are plain values.
  Inventory& inventory() { return inv_; }

  /// Adds a parameter; returns its index. Duplicate names are the caller's error (the first
  /// stays the one `find` returns).
  uint32_t add(Param p) { return inv_.add(std::move(p)); }
  /// Adds parameters in order, as `add` one by one would, indexing their names in one pass
  /// (several times faster for a model of 100k tensors).
  void append(std::vector<Param> more) { inv_.append(std::move(more)); }
  /// Room for `n` parameters (and as many names) without reallocation.
  void reserve(size_t n) {
    inv_.params_.reserve(n);
    inv_.index_.reserve(n);
  }
  /// Records `alias` as another name of the tensor `canonical` (a tied weight).
  bool add_alias(const std::string& canonical, const std::string& alias) {
    return inv_.add_alias(canonical, alias);
  }
  /// Makes `alias` a name of the tensor `canonical`: a parameter stored under `alias` is merged
  /// into it (removed, its names become aliases). False when `canonical` is unknown.
  bool tie(const std::string& canonical, const std::string& alias) {
    return inv_.tie(canonical, alias);
  }
  /// Removes the parameters for which `drop` is true (keeps order).
  template <class F>
  void remove_if(F drop) {
    std::vector<Param> kept;
    kept.reserve(inv_.params_.size());
    for (auto& p : inv_.params_)
      if (!drop(p)) kept.push_back(std::move(p));
    inv_.params_ = std::move(kept);
    inv_.reindex();
  }
  /// Reorders the parameters: the new i-th is the old `order[i]` (a permutation).
  void permute(const std::vector<uint32_t>& order) {
    std::vector<Param> moved;
    moved.reserve(inv_.params_.size());
    for (uint32_t i : order) moved.push_back(std::move(inv_.params_[i]));
    inv_.params_ = std::move(moved);
    inv_.reindex();
  }
  /// Sorts parameters by natural name order (`layers.2` before `layers.10`).
  void sort_natural() { inv_.sort_natural(); }

  /// Parameter `i`, to annotate what is not a name (roles, layers, shapes, module types: what
  /// discovery and a checkpoint's config add). Names and aliases change through the calls above.
  Param& annotate(uint32_t i) { return inv_.params_[i]; }
  /// Every parameter, to annotate as annotate() does.
  std::vector<Param>& annotations() { return inv_.params_; }
  /// Every parameter, to change in bulk (names too): the name index is rebuilt by done().
  std::vector<Param>& params() {
    dirty_ = true;
    return inv_.params_;
  }
  /// Rebuilds the name index if params() was used; the builder stays usable.
  void done() {
    if (dirty_) inv_.reindex();
    dirty_ = false;
  }

 private:
  Inventory& inv_;
  bool dirty_ = false;
};

}  // namespace layerfreeze
