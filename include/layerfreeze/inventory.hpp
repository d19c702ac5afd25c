// Inventory: a model's facts (model_facts.hpp: what any source — a live module, a safetensors
// header, a manifest, a built-in architecture — says) joined with the Structure layer discovery
// produces from them (roles, layers, stacks, towers, connectors, experts, data-flow order). The
// compiler resolves selectors against it. It never holds tensor data.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "layerfreeze/model_facts.hpp"

namespace layerfreeze {

/// Every parameter has exactly one role (docs/RULES.md, docs/ARCHITECTURES.md). `embeddings`,
/// `layer`, `head` and `other` are the trunk's; a multimodal model's towers (vision or audio
/// encoders) and the connectors that feed them into the trunk have roles of their own.
/// kMtp: a multi-token-prediction block (MiMo's `model.mtp_layers`, DeepSeek-V3's and GLM-4.5's
/// extra layer): stored beside the model, not run by its forward. It starts frozen and only the
/// `mtp` role or a regex selects it (docs/ARCHITECTURES.md, "Multi-token prediction").
enum class Role : uint8_t { kEmbeddings, kLayer, kHead, kOther, kTower, kConnector, kMtp };
constexpr int kNumRoles = 7;
const char* role_name(Role r);  // "embeddings", "layer", "head", "other", "tower", "connector",
                                // "mtp"
std::optional<Role> parse_role(const std::string& s);

/// What a tensor is inside a mixture-of-experts block (docs/EXPERTS.md): one routed expert's
/// (`experts.3.w1.weight`), every routed expert's at once along its first dimension (a fused
/// `experts.gate_up_proj`), a shared expert's, or the router's.
enum class ExpertPart : uint8_t { kNone, kRouted, kFused, kShared, kRouter };
const char* expert_part_name(ExpertPart p);  // "", "routed", "fused", "shared", "router"

/// Where discovery puts one tensor: its role, its layer, its tower or connector, its expert.
struct Placement {
  Role role = Role::kOther;
  int32_t layer = -1;             // layer index: a trunk layer (role kLayer) is < num_layers();
                                  // a tower's layer (role kTower) is >= num_layers()
  int32_t part = -1;              // role kTower: index in Inventory::towers;
                                  // role kConnector: index in Inventory::connectors
  int32_t anchor_layer = -1;      // for `other`: the layer it belongs with (the one before it)
  std::vector<Role> alias_roles;  // role of each alias name (a tied tensor may have two)
  ExpertPart expert_part = ExpertPart::kNone;
  int32_t expert = -1;  // kRouted: the expert's index in its layer
};

/// One parameter as a plan sees it: the tensor the source described and where discovery put it.
struct Param : Tensor, Placement {};

/// A tower: a stack (or several) that encodes another modality and feeds the trunk through a
/// connector (docs/ARCHITECTURES.md, "Multimodal models"). Every parameter under `root` is its.
struct Tower {
  std::string root;      // "visual", "model.vision_backbone", "model.sam_model"
  std::string modality;  // "vision", "audio"
  std::string found_by;  // "name pattern '…'", "config: language_config.num_hidden_layers = 12"
  std::vector<int32_t> stacks;  // indices into Inventory::stacks, input first
  int32_t num_layers = 0;
};

/// A connector: the module that carries a tower's output into the trunk (`visual.merger`,
/// `multi_modal_projector`, `resampler`).
struct Connector {
  std::string root;
  std::string pattern;  // the discovery pattern that matched
};

/// One indexed container of repeated blocks (`transformer.h`, `encoder.block`).
struct Stack {
  std::string container;  // "encoder.block"; for glued indices "layer" (layer1..layer4)
  std::string key;        // with the index marked: "encoder.block.#", "layer#"
  std::string pattern;    // the discovery pattern that matched
  int32_t first_layer = 0;
  int32_t num_layers = 0;
  int32_t tower = -1;  // index into Inventory::towers; -1 for a trunk stack
};

/// One repeated block. Trunk layers are numbered 0..num_layers()-1, input to output across the
/// trunk's stacks; a tower's layers follow them (numbers a user never types: selectors reach
/// them through `{stack: vision}`, counting inside the stack).
struct Layer {
  std::string name;  // "transformer.h.3"
  int32_t stack = 0;
  int64_t source_index = 0;      // the index in the name (3), or 1..4 for layer1..layer4
  std::vector<uint32_t> params;  // positions in Inventory::params(), ascending
  int64_t numel = 0;
};

/// The parts discovery finds in a model. Every parameter index in them (a Layer's params) is a
/// position in data-flow order (Inventory::params()), not an index into the facts.
struct StructureParts {
  std::vector<Stack> stacks;  // in data-flow order: towers' stacks first, then the trunk's
  std::vector<Layer> layers;  // trunk layers first (0..trunk_layers-1), then towers' layers
  std::vector<Tower> towers;  // in data-flow order
  std::vector<Connector> connectors;
  int32_t trunk_layers = 0;
  std::vector<std::string> notes;  // what discovery wants a reader to know
  /// Routed experts per MoE layer as discovery found them (the config's count, else the
  /// routers' first dimension, else the highest expert index + 1); 0: no mixture of experts.
  int64_t num_experts = 0;
};

/// What discovery makes of a model's facts: where each tensor goes, in data-flow order, and the
/// parts it found. Produced from the facts (discover_structure), never by changing them.
struct Structure : StructureParts {
  /// A permutation of the facts' tensors: the k-th parameter in data-flow order is
  /// facts.tensors()[order[k]]. The identity unless a header-only multimodal model's towers
  /// must come before its trunk.
  std::vector<uint32_t> order;
  std::vector<Placement> placements;  // placements[k]: where the k-th parameter goes
};

/// A model's facts joined with a structure: the parameters in data-flow order, each with its
/// placement — what selectors resolve against and every view prints. The facts are shared and
/// never change (model_facts.hpp); the parts (StructureParts) are what discovery reported, plain
/// values: compile() discovers them again from the facts, so changing them in a copy cannot
/// change a plan.
class Inventory : public StructureParts {
 public:
  /// A model with no tensors.
  Inventory();
  /// Facts without a structure yet: the source's order, every parameter `other`, no layers.
  explicit Inventory(ModelFacts facts);
  explicit Inventory(std::shared_ptr<const ModelFacts> facts);
  /// Facts joined with a structure discovered from them. Throws DiagnosticError
  /// ("structure-mismatch") when the structure does not describe these facts (order not a
  /// permutation of their tensors, a placement or layer member out of range).
  Inventory(std::shared_ptr<const ModelFacts> facts, Structure structure);

  /// What reading the model said: names, shapes, dtypes, ties, non-parameters, config facts.
  const ModelFacts& facts() const { return *facts_; }
  const std::shared_ptr<const ModelFacts>& shared_facts() const { return facts_; }
  /// The structure this inventory joins to its facts (a copy: placements, order, parts).
  Structure structure() const;
  /// params()[k] is facts().tensors()[order()[k]].
  const std::vector<uint32_t>& order() const { return order_; }

  /// The parameters in data-flow order (the facts' order unless discovery reordered a
  /// header-only multimodal model).
  const std::vector<Param>& params() const { return params_; }
  /// Position in params() of a parameter by canonical name or alias.
  std::optional<uint32_t> find(std::string_view name) const;
  bool contains(std::string_view name) const { return facts_->contains(name); }

  bool shapes_known() const { return facts_->shapes_known(); }
  int64_t total_numel() const { return facts_->total_numel(); }
  int64_t total_bytes() const { return facts_->total_bytes(); }
  size_t num_names() const { return facts_->num_names(); }
  size_t indexed_names() const { return facts_->indexed_names(); }
  /// Trunk layers: what layer indices, ratios and presets count (a tower's layers are not).
  int32_t num_layers() const { return trunk_layers; }
  bool multimodal() const { return !towers.empty(); }
  /// The facts' fingerprint (ModelFacts::fingerprint): the structure does not change it.
  std::string fingerprint() const { return facts_->fingerprint(); }

 private:
  friend class StructureDraft;  // layer discovery's view (src/core/structure_draft.hpp)
  void join(const Structure* structure);

  std::shared_ptr<const ModelFacts> facts_;
  std::vector<Param> params_;
  std::vector<uint32_t> order_;     // data-flow position -> fact index
  std::vector<uint32_t> position_;  // fact index -> data-flow position
};

}  // namespace layerfreeze
