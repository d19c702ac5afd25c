#include "analysis/cache_boundary.hpp"

#include <algorithm>
#include <limits>
#include <set>

namespace layerfreeze {

CacheBoundary cache_boundary(const CompiledPlan& plan, const Selection& frozen) {
  const Inventory& inv = *plan.inventory;
  CacheBoundary b;
  auto trains = [&](size_t i) {
    return !frozen.params.test(i) || plan.partial(frozen, static_cast<uint32_t>(i));
  };
  // What feeds the trunk: a trainable embedding, tower or connector changes the trunk's input.
  const int32_t L = inv.num_layers();
  int32_t k = L;
  bool any_trains = false;
  for (size_t i = 0; i < inv.params().size(); ++i) {
    if (!trains(i)) continue;
    any_trains = true;
    const Param& p = inv.params()[i];
    switch (p.role) {
      case Role::kEmbeddings: b.stops = "the embeddings train"; return b;
      case Role::kTower: b.stops = "a tower trains"; return b;
      case Role::kConnector: b.stops = "a connector trains"; return b;
      case Role::kLayer:
        if (p.layer < k) {
          k = p.layer;
          b.stops = "layer " + std::to_string(p.layer) + " trains";
        }
        break;
      case Role::kOther:  // between layers: it belongs after its anchor layer
        if (p.anchor_layer + 1 < k) {
          k = std::max(0, p.anchor_layer + 1);
          b.stops = "'" + p.name + "' trains";
        }
        break;
      case Role::kHead:
      case Role::kMtp: break;
    }
  }
  if (!any_trains)
    b.stops = "nothing trains";
  else if (k == L)
    b.stops = "only the head trains";
  b.layers = k;
  // The prefix: the embeddings, layers [0, k), and `other` tensors anchored inside it.
  std::set<std::string> batchnorms;
  for (size_t i = 0; i < inv.params().size(); ++i) {
    const Param& p = inv.params()[i];
    if (!in_cache_prefix(p, k)) continue;
    if (p.role != Role::kEmbeddings) b.prefix_numel += p.numel;
    if (p.module_type.find("BatchNorm") != std::string::npos) {
      auto dot = p.name.rfind('.');
      batchnorms.insert(dot == std::string::npos ? p.name : p.name.substr(0, dot));
    }
  }
  if (!batchnorms.empty() && plan.options.batchnorm != Options::BatchNorm::kEvalWhenFrozen &&
      plan.options.frozen_prefix != Options::FrozenPrefix::kEval)
    b.train_mode_effects.push_back(
        std::to_string(batchnorms.size()) + " BatchNorm module" +
        (batchnorms.size() == 1 ? "" : "s") + " (" + *batchnorms.begin() +
        (batchnorms.size() > 1 ? ", …" : "") +
        ") normalise with batch statistics in train mode (options.frozen_prefix: eval, or "
        "batchnorm: eval_when_frozen, keeps them in eval mode)");
  // The width at the boundary: the token embedding's (the 2-D embeddings tensor with most rows).
  int64_t rows = 0;
  for (const auto& p : inv.params())
    if (p.role == Role::kEmbeddings && p.shape_known && p.shape.size() == 2 && p.shape[0] > rows) {
      rows = p.shape[0];
      b.width = p.shape[1];
      b.value_bytes = dtype_bytes(p.dtype);
    }
  return b;
}

}  // namespace layerfreeze
