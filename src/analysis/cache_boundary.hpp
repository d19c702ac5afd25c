// The frozen prefix a cache could hold (docs/CACHE.md): at a change point, the part of the model
// the input flows through before anything trains — the embeddings and the trunk's layers
// 0..k-1, every parameter in them frozen whole — whose output, for a given sample, does not change
// while those parameters stay frozen. The plan says where that boundary is, what forward compute
// a cache of its output saves per step, until when it holds, and how large the cache is for a
// dataset. Whether the prefix is a pure function of the sample in train mode (no dropout, no
// batch statistics) is said as far as a parameter inventory can see it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/plan.hpp"

namespace layerfreeze {

struct CacheBoundary {
  /// The cacheable prefix: the embeddings and trunk layers [0, layers). -1: nothing is (the
  /// embeddings train, or the model has no token embedding and layer 0 trains); 0: the
  /// embeddings' output (layer 0 trains).
  int32_t layers = -1;
  std::string stops;  // why the boundary is not deeper: "layer 14 trains", "the embeddings train"
  /// Parameters of the prefix the forward multiplies by (embedding lookups excluded): a cache
  /// saves their 2N-per-token forward compute every step.
  int64_t prefix_numel = 0;
  int64_t width = 0;  // values a token at the boundary (the token embedding's width); 0: unknown
  int64_t value_bytes = 0;  // bytes of one value (the embedding's dtype); 0: unknown
  /// What in the prefix changes its output in train mode, as the inventory shows it: BatchNorm
  /// modules (batch statistics) unless the batchnorm policy keeps frozen ones in eval mode.
  std::vector<std::string> train_mode_effects;
  /// The first later change point that opens a parameter inside the prefix (the cache must be
  /// trimmed or dropped there); nullopt: none up to the horizon.
  std::optional<Time> holds_until;
  std::string holds_until_why;  // "layer 12 opens"

  /// A multimodal model's towers frozen whole (roots, data-flow order) and their parameters, with
  /// the connectors' when every tower and connector is frozen (`connectors_in`): part of the
  /// prefix when `layers` >= 0; when the trunk has nothing cacheable, their output alone is.
  std::vector<std::string> towers;
  int64_t tower_numel = 0;
  bool connectors_in = false;

  /// The trunk's prefix is cacheable (a PrefixCache caches it).
  bool cacheable() const { return layers >= 0; }
  /// Only the frozen towers' output is (the embeddings or a connector train).
  bool tower_only() const { return layers < 0 && tower_numel > 0; }
  /// The parameters whose forward a cache of it saves: the trunk's prefix, or the towers alone.
  int64_t saved_numel() const {
    return cacheable() ? prefix_numel : tower_only() ? tower_numel : 0;
  }
};

/// Whether `p` lies in the prefix of a boundary at `layers` (>= 0): the embeddings, trunk layers
/// [0, layers), `other` tensors anchored inside them, and a multimodal model's towers and
/// connectors (all frozen when the trunk has a boundary: they feed it).
inline bool in_cache_prefix(const Param& p, int32_t layers) {
  return p.role == Role::kEmbeddings || p.role == Role::kTower || p.role == Role::kConnector ||
         (p.role == Role::kLayer && p.layer < layers) ||
         (p.role == Role::kOther && p.anchor_layer >= 0 && p.anchor_layer + 1 < layers);
}

/// The boundary of the state `frozen` (whole tensors; a tensor frozen in part is not frozen).
CacheBoundary cache_boundary(const CompiledPlan& plan, const Selection& frozen);

/// Bytes of a cache of the boundary's output for `samples` sequences of `seq_len` tokens; 0 when
/// the width or the dtype is unknown.
inline int64_t cache_bytes(const CacheBoundary& b, int64_t samples, int64_t seq_len) {
  return b.cacheable() ? samples * seq_len * b.width * b.value_bytes : 0;
}

}  // namespace layerfreeze
