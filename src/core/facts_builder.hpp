// FactsBuilder: the one way to change a ModelFacts' tensors (model sources fill them: names,
// ties, shapes and module types from a config). Facts are read-only to everyone else, so the
// tensors and their private name index can never disagree (a `push_back` on a public vector once
// left a name that `find` did not know). Once facts are inside an Inventory they are shared as
// const and no builder reaches them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "layerfreeze/model_facts.hpp"

namespace layerfreeze {

class FactsBuilder {
 public:
  /// Changes `facts` in place; `facts` must outlive the builder.
  explicit FactsBuilder(ModelFacts& facts) : facts_(facts) {}
  /// Rebuilds the name index when tensors() handed out the tensors to change.
  ~FactsBuilder() { done(); }
  FactsBuilder(const FactsBuilder&) = delete;
  FactsBuilder& operator=(const FactsBuilder&) = delete;

  /// The facts being built: their descriptive fields are plain values.
  ModelFacts& facts() { return facts_; }

  /// Adds a tensor; returns its index. Duplicate names are the caller's error (the first stays
  /// the one `find` returns).
  uint32_t add(Tensor t) { return facts_.add(std::move(t)); }
  /// Adds tensors in order, as `add` one by one would, indexing their names in one pass
  /// (several times faster for a model of 100k tensors).
  void append(std::vector<Tensor> more) { facts_.append(std::move(more)); }
  /// Room for `n` tensors (and as many names) without reallocation.
  void reserve(size_t n) {
    facts_.tensors_.reserve(n);
    facts_.index_.reserve(n);
  }
  /// Records `alias` as another name of the tensor `canonical` (a tied weight).
  bool add_alias(const std::string& canonical, const std::string& alias) {
    return facts_.add_alias(canonical, alias);
  }
  /// Makes `alias` a name of the tensor `canonical`: a tensor stored under `alias` is merged
  /// into it (removed, its names become aliases). False when `canonical` is unknown.
  bool tie(const std::string& canonical, const std::string& alias) {
    return facts_.tie(canonical, alias);
  }
  /// Removes the tensors for which `drop` is true (keeps order).
  template <class F>
  void remove_if(F drop) {
    std::vector<Tensor> kept;
    kept.reserve(facts_.tensors_.size());
    for (auto& t : facts_.tensors_)
      if (!drop(t)) kept.push_back(std::move(t));
    facts_.tensors_ = std::move(kept);
    facts_.reindex();
  }
  /// Sorts tensors by natural name order (`layers.2` before `layers.10`): what a header-only
  /// source gives.
  void sort_natural() { facts_.sort_natural(); }

  /// Tensor `i`, to change what is not a name (shapes, dtypes, module types: what a checkpoint's
  /// config adds). Names and aliases change through the calls above.
  Tensor& annotate(uint32_t i) { return facts_.tensors_[i]; }
  /// Every tensor, to change as annotate() does.
  std::vector<Tensor>& annotations() { return facts_.tensors_; }
  /// Every tensor, to change in bulk (names too): the name index is rebuilt by done().
  std::vector<Tensor>& tensors() {
    dirty_ = true;
    return facts_.tensors_;
  }
  /// Rebuilds the name index if tensors() was used; the builder stays usable.
  void done() {
    if (dirty_) facts_.reindex();
    dirty_ = false;
  }

 private:
  ModelFacts& facts_;
  bool dirty_ = false;
};

}  // namespace layerfreeze
