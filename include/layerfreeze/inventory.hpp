// Inventory: the ordered list of a model's parameters, from any source (a live module, a
// safetensors header, a manifest, a built-in architecture). Layer discovery annotates it with
// layers and roles; the compiler resolves selectors against it. It never holds tensor data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "layerfreeze/diagnostics.hpp"

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

/// Bytes per element of a dtype name ("float32", "bfloat16", ...); 0 when unknown.
int dtype_bytes(const std::string& dtype);

/// One tensor of the model. Tied tensors are one Param with aliases; counts never double.
struct Param {
  std::string name;                  // canonical name: the first registered
  std::vector<std::string> aliases;  // the other names of the same tensor
  std::vector<int64_t> shape;        // meaningful only when shape_known
  bool shape_known = true;
  std::string dtype;        // "float32", ... ; "" when the source does not say
  int64_t numel = 0;        // 0 when !shape_known
  std::string module_type;  // short type name ("Linear"); "" when unknown

  // Filled by layer discovery.
  Role role = Role::kOther;
  int32_t layer = -1;             // layer index: a trunk layer (role kLayer) is < num_layers();
                                  // a tower's layer (role kTower) is >= num_layers()
  int32_t part = -1;              // role kTower: index in Inventory::towers;
                                  // role kConnector: index in Inventory::connectors
  int32_t anchor_layer = -1;      // for `other`: the layer it belongs with (the one before it)
  std::vector<Role> alias_roles;  // role of each alias name (a tied tensor may have two)
  ExpertPart expert_part = ExpertPart::kNone;
  int32_t expert = -1;  // kRouted: the expert's index in its layer

  int64_t bytes() const { return numel * dtype_bytes(dtype); }
  std::string module_path() const;  // name without its last component
  std::string leaf() const;         // last component ("weight", "bias")
};

/// A tensor a checkpoint stores that is not a trainable parameter: quantization metadata
/// (bitsandbytes `.absmax`, GPTQ `qzeros`, fp8 `weight_scale_inv`) or a buffer
/// (`rotary_emb.inv_freq`, BatchNorm running statistics). Never counted, never selectable.
struct NonParameter {
  std::string name;
  std::string kind;   // "quantization metadata (bitsandbytes)", "buffer", ...
  std::string dtype;  // "" when unknown
  std::vector<int64_t> shape;
  bool shape_known = false;
};

/// One thing a model family says of its structure (a family file's `structure:`,
/// docs/FAMILIES.md): a discovery pattern and its kind (`trunk`, `towers`, `connectors`,
/// `embeddings`, `head`, `mtp`, … as in rules/discovery.yaml), used before the shipped patterns.
struct StructureHint {
  std::string kind;
  std::string pattern;
  std::string modality;  // towers: "vision", "audio"; "" elsewhere
};

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
  std::vector<uint32_t> params;  // indices into Inventory::params, inventory order
  int64_t numel = 0;
};

/// The parameters of a model in order, with what discovery found. Read-only once built: model
/// sources and layer discovery make it through an internal builder (src/core/inventory_builder.hpp)
/// that keeps the parameters and their name index together, so a name is always found. The
/// descriptive fields below are what the source and discovery reported; compile() runs discovery
/// again, so changing them in a copy cannot change a plan.
class Inventory {
 public:
  std::string source;              // "builtin:gpt2", a path, ...
  std::string model_type;          // "GPT2LMHeadModel" when the source says
  bool registration_order = true;  // false for header-only sources (natural name order)
  std::vector<Stack> stacks;       // in data-flow order: towers' stacks first, then the trunk's
  std::vector<Layer> layers;       // trunk layers first (0..num_layers()-1), then towers' layers
  std::vector<Tower> towers;       // in data-flow order
  std::vector<Connector> connectors;
  int32_t trunk_layers = 0;               // set by discovery
  std::vector<std::string> notes;         // what discovery wants a reader to know
  std::vector<std::string> source_notes;  // what the model source wants a reader to know
  std::vector<Diagnostic> warnings;       // what reading the model warned about (load_model)

  // What a checkpoint's config.json and the tensors beside the parameters say.
  std::vector<NonParameter> non_params;  // stored tensors that are not parameters
  std::string quantization;              // "bitsandbytes nf4", "gptq 4-bit"; "" when not quantized
  std::string config;                    // the config.json read, "" when none
  std::string family;                    // the model family that shaped it ("llama"), or ""
  int64_t stored_bytes = 0;              // an index's metadata.total_size; 0 when unknown
  /// Layer counts the config states, per stack ("num_hidden_layers", 80); discovery checks them.
  std::vector<std::pair<std::string, int64_t>> config_layers;
  /// Modalities the config describes besides text ("vision" for a `vision_config`), in its order.
  std::vector<std::string> config_modalities;
  /// Routed experts per MoE layer as the config states it (`num_local_experts`, `num_experts`,
  /// `n_routed_experts`); 0 when it says nothing.
  int64_t config_experts = 0;
  /// Multi-token-prediction blocks the config states (`num_nextn_predict_layers`); 0: none said.
  int64_t config_mtp_layers = 0;
  /// What the model's family says of its structure; empty when no family shaped it.
  std::vector<StructureHint> family_structure;
  /// Routed experts per MoE layer as discovery found them (the config's count, else the
  /// routers' first dimension, else the highest expert index + 1); 0: no mixture of experts.
  int64_t num_experts = 0;

  /// The parameters, in order (registration order, or natural name order for header-only
  /// sources).
  const std::vector<Param>& params() const { return params_; }
  /// Index of a parameter by canonical name or alias.
  std::optional<uint32_t> find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name).has_value(); }

  bool shapes_known() const;
  int64_t total_numel() const;
  int64_t total_bytes() const;
  size_t num_names() const;  // canonical names + aliases
  /// Distinct names found by `find`: less than num_names() after a repeated name.
  size_t indexed_names() const { return index_.size(); }
  /// Trunk layers: what layer indices, ratios and presets count (a tower's layers are not).
  int32_t num_layers() const { return trunk_layers; }
  bool multimodal() const { return !towers.empty(); }
  /// A stable hash of names, shapes and dtypes, hex.
  std::string fingerprint() const;

 private:
  friend class InventoryBuilder;  // the only way to change the parameters
  uint32_t add(Param p);
  void append(std::vector<Param> more);
  bool add_alias(const std::string& canonical, const std::string& alias);
  bool tie(const std::string& canonical, const std::string& alias);
  void sort_natural();
  void reindex();

  std::vector<Param> params_;

  /// Names to parameter indices: an open-addressing table of (hash, parameter, name slot) that
  /// refers to the names in `params` instead of copying them (a 100k-tensor model would
  /// otherwise allocate every name twice). A lookup compares the stored name, so a stale entry
  /// can never return a parameter of another name.
  class NameIndex {
   public:
    void reserve(size_t names);
    void clear();
    size_t size() const { return size_; }
    /// Adds the name `which` (0: the canonical name, k: aliases[k-1]) of parameter `param`
    /// unless a name equal to it is indexed already; false then.
    bool insert(const std::vector<Param>& params, uint32_t param, uint32_t which);
    /// Inserts every name of params[first..], in order (memory fetched ahead: one pass).
    void insert_from(const std::vector<Param>& params, uint32_t first);
    std::optional<uint32_t> find(const std::vector<Param>& params, std::string_view name) const;

   private:
    struct Slot {
      uint32_t hash = 0;
      uint32_t param = kEmpty;  // kEmpty: a free slot
      uint32_t which = 0;
    };
    static constexpr uint32_t kEmpty = 0xffffffffu;
    void grow(size_t slots);
    /// Inserts a name whose hash is known; false when an equal name is indexed already.
    bool insert_hashed(const std::vector<Param>& params, Slot slot, std::string_view name);
    std::vector<Slot> slots_;  // a power of two, at most half full
    size_t size_ = 0;
  };
  NameIndex index_;
};

/// `a < b` in natural order: digit runs compare as numbers.
bool natural_less(const std::string& a, const std::string& b);
/// A key whose byte order is natural order: natural_less(a, b) == (natural_key(a) <
/// natural_key(b)). Sorting many names by keys computed once is several times faster.
std::string natural_key(const std::string& name);

}  // namespace layerfreeze
