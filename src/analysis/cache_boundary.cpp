#include "analysis/cache_boundary.hpp"

#include <fmt/format.h>

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
  std::string input_trains;  // the embeddings, a tower or a connector: nothing of the trunk caches
  std::vector<char> tower_trains(inv.towers.size(), 0);
  bool connector_trains = false;
  for (size_t i = 0; i < inv.params().size(); ++i) {
    if (!trains(i)) continue;
    any_trains = true;
    const Param& p = inv.params()[i];
    switch (p.role) {
      case Role::kEmbeddings:
        if (input_trains.empty()) input_trains = "the embeddings train";
        break;
      case Role::kTower:
        if (p.part >= 0 && static_cast<size_t>(p.part) < tower_trains.size())
          tower_trains[static_cast<size_t>(p.part)] = 1;
        if (input_trains.empty()) input_trains = "a tower trains";
        break;
      case Role::kConnector:
        connector_trains = true;
        if (input_trains.empty()) input_trains = "a connector trains";
        break;
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
  // A multimodal model's towers frozen whole: their output for a sample does not change, whatever
  // the trunk does — inside the trunk's prefix when it has one, a cache of its own otherwise (the
  // common case: the vision tower frozen, the connector and the language model training). The
  // connectors go with them when every tower and connector is frozen.
  bool all_towers_frozen = true;
  for (size_t t = 0; t < inv.towers.size(); ++t) {
    if (tower_trains[t]) {
      all_towers_frozen = false;
      continue;
    }
    b.towers.push_back(inv.towers[t].root);
  }
  for (const auto& p : inv.params())
    if ((p.role == Role::kTower && p.part >= 0 &&
         static_cast<size_t>(p.part) < tower_trains.size() && !tower_trains[p.part]) ||
        (p.role == Role::kConnector && all_towers_frozen && !connector_trains))
      b.tower_numel += p.numel;
  b.connectors_in = all_towers_frozen && !connector_trains && !inv.connectors.empty();
  // BatchNorm in what is cached normalises with batch statistics in train mode.
  auto batchnorm_effects = [&](auto&& cached) {
    std::set<std::string> batchnorms;
    for (const auto& p : inv.params())
      if (cached(p) && p.module_type.find("BatchNorm") != std::string::npos) {
        auto dot = p.name.rfind('.');
        batchnorms.insert(dot == std::string::npos ? p.name : p.name.substr(0, dot));
      }
    if (batchnorms.empty() || plan.options.batchnorm == Options::BatchNorm::kEvalWhenFrozen ||
        plan.options.frozen_prefix == Options::FrozenPrefix::kEval)
      return;
    b.train_mode_effects.push_back(
        std::to_string(batchnorms.size()) + " BatchNorm module" +
        (batchnorms.size() == 1 ? "" : "s") + " (" + *batchnorms.begin() +
        (batchnorms.size() > 1 ? ", …" : "") +
        ") normalise with batch statistics in train mode (options.frozen_prefix: eval, or "
        "batchnorm: eval_when_frozen, keeps them in eval mode)");
  };
  // Dropout has no parameters, but a config may state it: then the prefix varies in train mode.
  auto dropout_effects = [&] {
    const auto& d = inv.facts().config_dropout;
    if (d.empty() || plan.options.frozen_prefix == Options::FrozenPrefix::kEval) return;
    std::string list;
    for (size_t i = 0; i < d.size() && i < 4; ++i)
      list += (i ? ", " : "") + d[i].first + " " + fmt::format("{:g}", d[i].second);
    if (d.size() > 4) list += ", …";
    b.train_mode_effects.push_back(
        "the config sets dropout (" + list +
        "): it draws anew every step in train mode "
        "(options.frozen_prefix: eval holds the prefix's modules in eval mode)");
  };
  if (!input_trains.empty()) {
    b.stops = input_trains;
    dropout_effects();
    batchnorm_effects([&](const Param& p) {
      return p.role == Role::kTower && p.part >= 0 &&
             static_cast<size_t>(p.part) < tower_trains.size() && !tower_trains[p.part];
    });
    return b;
  }
  if (!any_trains)
    b.stops = "nothing trains";
  else if (k == L)
    b.stops = "only the head trains";
  b.layers = k;
  // The prefix: the embeddings, towers, connectors, layers [0, k), and `other` tensors anchored
  // inside it.
  for (const auto& p : inv.params())
    if (in_cache_prefix(p, k) && p.role != Role::kEmbeddings) b.prefix_numel += p.numel;
  batchnorm_effects([&](const Param& p) { return in_cache_prefix(p, k); });
  dropout_effects();
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
