// StructureDraft: layer discovery's working view of an Inventory while it finds the structure.
// It changes placements (roles, layers, parts, experts) and the data-flow order, never the
// facts: they are shared, const, and the same before and after (include/layerfreeze/
// model_facts.hpp). discover_layers starts from the facts alone (it drops whatever structure
// the inventory had), so discovering twice, or with other patterns, never builds on an earlier
// answer.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

class StructureDraft {
 public:
  explicit StructureDraft(Inventory& inv) : inv_(inv) {}

  /// Back to the facts alone: their order, every placement the default, no parts. The
  /// parameters move back (no tensor is copied: a 100k-tensor model pays for moves only).
  void reset() {
    const size_t n = inv_.params_.size();
    bool moved = false;
    for (size_t k = 0; k < n && !moved; ++k) moved = inv_.order_[k] != k;
    if (moved) {
      std::vector<Param> back(n);
      for (size_t k = 0; k < n; ++k) back[inv_.order_[k]] = std::move(inv_.params_[k]);
      inv_.params_ = std::move(back);
    }
    for (size_t k = 0; k < n; ++k) {
      inv_.order_[k] = inv_.position_[k] = static_cast<uint32_t>(k);
      static_cast<Placement&>(inv_.params_[k]) = Placement{};
    }
    static_cast<StructureParts&>(inv_) = StructureParts{};
  }

  /// Where parameter `k` (a position in data-flow order) goes.
  Placement& place(uint32_t k) { return inv_.params_[k]; }
  /// Every parameter's placement, in data-flow order.
  template <class F>
  void place_all(F f) {
    for (Param& p : inv_.params_) f(static_cast<Placement&>(p));
  }
  /// Puts the parameters in another data-flow order: the new k-th is the old `order[k]` (a
  /// permutation of positions). The facts keep theirs; Inventory::order() records the result.
  /// Layers' members are positions, so the caller renumbers them.
  void reorder(const std::vector<uint32_t>& order) {
    std::vector<Param> moved;
    moved.reserve(inv_.params_.size());
    std::vector<uint32_t> facts_order(order.size());
    for (size_t k = 0; k < order.size(); ++k) {
      moved.push_back(std::move(inv_.params_[order[k]]));
      facts_order[k] = inv_.order_[order[k]];
    }
    inv_.params_ = std::move(moved);
    inv_.order_ = std::move(facts_order);
    for (size_t k = 0; k < inv_.order_.size(); ++k)
      inv_.position_[inv_.order_[k]] = static_cast<uint32_t>(k);
  }

 private:
  Inventory& inv_;
};

}  // namespace layerfreeze
