// ModelFacts: what reading a model says, and nothing discovery decides — the tensors (names,
// aliases, shapes, dtypes, module types) in the order the source gives them, the stored tensors
// that are not parameters, and what the checkpoint's config states. A model source builds it
// once (src/core/facts_builder.hpp); afterwards it is shared read-only: layer discovery reads it
// and produces a Structure (inventory.hpp), the compiler takes both. It never holds tensor data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

/// Bytes per element of a dtype name ("float32", "bfloat16", ...); 0 when unknown.
int dtype_bytes(const std::string& dtype);

/// One tensor as the source describes it. Tied tensors are one Tensor with aliases; counts never
/// double.
struct Tensor {
  std::string name;                  // canonical name: the first registered
  std::vector<std::string> aliases;  // the other names of the same tensor
  std::vector<int64_t> shape;        // meaningful only when shape_known
  bool shape_known = true;
  std::string dtype;        // "float32", ... ; "" when the source does not say
  int64_t numel = 0;        // 0 when !shape_known
  std::string module_type;  // short type name ("Linear"); "" when unknown

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

/// The facts of one model. The descriptive fields are plain values a source sets while it
/// builds them; the tensors change only through FactsBuilder, which keeps them and the name
/// index behind find() together. Once a source has handed them over (inside an Inventory) they
/// are shared as `const` and never change again: discovering a structure twice, with any
/// patterns, reads the same facts.
class ModelFacts {
 public:
  std::string source;                     // "builtin:gpt2", a path, ...
  std::string model_type;                 // "GPT2LMHeadModel" when the source says
  bool registration_order = true;         // false for header-only sources (natural name order)
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
  /// Dropout probabilities above 0 the config sets ("attention_dropout", 0.1), in key order: in
  /// train mode they make a frozen prefix's output vary (docs/CACHE.md).
  std::vector<std::pair<std::string, double>> config_dropout;
  /// What the model's family says of its structure; empty when no family shaped it.
  std::vector<StructureHint> family_structure;

  /// The tensors in the source's order (registration order, or natural name order for
  /// header-only sources).
  const std::vector<Tensor>& tensors() const { return tensors_; }
  size_t size() const { return tensors_.size(); }
  /// Index of a tensor by canonical name or alias.
  std::optional<uint32_t> find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name).has_value(); }

  bool shapes_known() const;
  int64_t total_numel() const;
  int64_t total_bytes() const;
  size_t num_names() const;  // canonical names + aliases
  /// Distinct names found by `find`: less than num_names() after a repeated name.
  size_t indexed_names() const { return index_.size(); }
  /// A stable hash of names, shapes and dtypes in the source's order, hex. Discovery never
  /// changes it: the same checkpoint has the same fingerprint under every strategy.
  std::string fingerprint() const;

 private:
  friend class FactsBuilder;  // the only way to change the tensors
  uint32_t add(Tensor t);
  void append(std::vector<Tensor> more);
  bool add_alias(const std::string& canonical, const std::string& alias);
  bool tie(const std::string& canonical, const std::string& alias);
  void sort_natural();
  void reindex();

  std::vector<Tensor> tensors_;

  /// Names to tensor indices: an open-addressing table of (hash, tensor, name slot) that refers
  /// to the names in `tensors_` instead of copying them (a 100k-tensor model would otherwise
  /// allocate every name twice). A lookup compares the stored name, so a stale entry can never
  /// return a tensor of another name.
  class NameIndex {
   public:
    void reserve(size_t names);
    void clear();
    size_t size() const { return size_; }
    /// Adds the name `which` (0: the canonical name, k: aliases[k-1]) of tensor `t` unless a
    /// name equal to it is indexed already; false then.
    bool insert(const std::vector<Tensor>& tensors, uint32_t t, uint32_t which);
    /// Inserts every name of tensors[first..], in order (memory fetched ahead: one pass).
    void insert_from(const std::vector<Tensor>& tensors, uint32_t first);
    std::optional<uint32_t> find(const std::vector<Tensor>& tensors, std::string_view name) const;

   private:
    struct Slot {
      uint32_t hash = 0;
      uint32_t param = kEmpty;  // kEmpty: a free slot
      uint32_t which = 0;
    };
    static constexpr uint32_t kEmpty = 0xffffffffu;
    void grow(size_t slots);
    /// Inserts a name whose hash is known; false when an equal name is indexed already.
    bool insert_hashed(const std::vector<Tensor>& tensors, Slot slot, std::string_view name);
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
