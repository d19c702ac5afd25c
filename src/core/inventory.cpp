#include "layerfreeze/inventory.hpp"

#include <utility>

namespace layerfreeze {

const char* role_name(Role r) {
  switch (r) {
    case Role::kEmbeddings: return "embeddings";
    case Role::kLayer: return "layer";
    case Role::kHead: return "head";
    case Role::kOther: return "other";
    case Role::kTower: return "tower";
    case Role::kConnector: return "connector";
    case Role::kMtp: return "mtp";
  }
  return "other";
}

const char* expert_part_name(ExpertPart p) {
  switch (p) {
    case ExpertPart::kNone: return "";
    case ExpertPart::kRouted: return "routed";
    case ExpertPart::kFused: return "fused";
    case ExpertPart::kShared: return "shared";
    case ExpertPart::kRouter: return "router";
  }
  return "";
}

std::optional<Role> parse_role(const std::string& s) {
  if (s == "embeddings") return Role::kEmbeddings;
  if (s == "layer" || s == "layers") return Role::kLayer;
  if (s == "head") return Role::kHead;
  if (s == "other") return Role::kOther;
  if (s == "tower" || s == "towers") return Role::kTower;
  if (s == "connector" || s == "connectors") return Role::kConnector;
  if (s == "mtp") return Role::kMtp;
  return std::nullopt;
}

Inventory::Inventory() : Inventory(std::make_shared<const ModelFacts>()) {}

Inventory::Inventory(ModelFacts facts)
    : Inventory(std::make_shared<const ModelFacts>(std::move(facts))) {}

Inventory::Inventory(std::shared_ptr<const ModelFacts> facts) : facts_(std::move(facts)) {
  if (!facts_) facts_ = std::make_shared<const ModelFacts>();
  join(nullptr);
}

Inventory::Inventory(std::shared_ptr<const ModelFacts> facts, Structure structure)
    : facts_(std::move(facts)) {
  if (!facts_) facts_ = std::make_shared<const ModelFacts>();
  const size_t n = facts_->size();
  auto refuse = [](const std::string& why) {
    Diagnostics d;
    d.error("structure-mismatch", "the structure does not describe these facts: " + why, {},
            {"join a structure discovered from the same facts (discover_structure, "
             "Inventory::structure())"});
    throw DiagnosticError(std::move(d));
  };
  if (structure.order.size() != n || structure.placements.size() != n)
    refuse(std::to_string(n) + " tensors, a structure of " +
           std::to_string(structure.order.size()) + " (order) and " +
           std::to_string(structure.placements.size()) + " (placements)");
  std::vector<char> seen(n, 0);
  for (uint32_t f : structure.order) {
    if (f >= n || seen[f]) refuse("order is not a permutation of the tensors");
    seen[f] = 1;
  }
  for (const Layer& l : structure.layers)
    for (uint32_t q : l.params)
      if (q >= n) refuse("layer '" + l.name + "' holds a parameter out of range");
  for (const Stack& st : structure.stacks)
    if (st.first_layer < 0 || st.num_layers < 0 ||
        static_cast<size_t>(st.first_layer) + static_cast<size_t>(st.num_layers) >
            structure.layers.size())
      refuse("stack '" + st.container + "' spans layers that do not exist");
  if (structure.trunk_layers < 0 ||
      static_cast<size_t>(structure.trunk_layers) > structure.layers.size())
    refuse("more trunk layers than layers");
  join(&structure);
  static_cast<StructureParts&>(*this) = std::move(static_cast<StructureParts&>(structure));
}

void Inventory::join(const Structure* structure) {
  const auto& tensors = facts_->tensors();
  const size_t n = tensors.size();
  order_.resize(n);
  position_.resize(n);
  params_.clear();
  params_.reserve(n);
  for (size_t k = 0; k < n; ++k) {
    const uint32_t f = structure ? structure->order[k] : static_cast<uint32_t>(k);
    order_[k] = f;
    position_[f] = static_cast<uint32_t>(k);
    Param p;
    static_cast<Tensor&>(p) = tensors[f];
    if (structure) static_cast<Placement&>(p) = structure->placements[k];
    params_.push_back(std::move(p));
  }
}

Structure Inventory::structure() const {
  Structure s;
  static_cast<StructureParts&>(s) = static_cast<const StructureParts&>(*this);
  s.order = order_;
  s.placements.reserve(params_.size());
  for (const Param& p : params_) s.placements.push_back(static_cast<const Placement&>(p));
  return s;
}

std::optional<uint32_t> Inventory::find(std::string_view name) const {
  auto f = facts_->find(name);
  if (!f) return std::nullopt;
  return position_[*f];
}

}  // namespace layerfreeze
