// Model families as data (rules/families/*.yaml): for the `model_type`s and `architectures` a
// family covers, which tensors a config.json implies — names with `${...}` expressions over the
// config's keys, shapes as expressions, repeats over layers and experts, optional tensors by
// condition, and the ties (lm_head = embed_tokens when `tie_word_embeddings`). Expanding a family
// on a config gives an exact inventory (names, shapes, dtypes, registration order) without a
// byte of weights. docs/FAMILIES.md describes the format.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"
#include "sources/model_config.hpp"

namespace layerfreeze {

/// The largest family file read (a shipped one is a few KB).
inline constexpr uint64_t kMaxFamilyFileBytes = uint64_t{1} << 20;

/// One name that is another name's tensor (`lm_head.weight` = `model.embed_tokens.weight`).
struct Tie {
  std::string alias, canonical;
  bool by_config = false;  // holds because of the config (`tie_word_embeddings`), not always
};

/// What a family implies for one config.
struct FamilyModel {
  ModelFacts inv;           // registration order; ties applied as aliases
  std::vector<Tie> ties;    // the ties that hold for this config
  std::string family;       // "llama"
  std::string base_prefix;  // "transformer." when checkpoints may store the base model bare
  /// Checkpoint tensors under these prefixes are not the model's (prefix, kind): DeepSeek-V3's
  /// multi-token-prediction layer, which transformers does not load.
  std::vector<std::pair<std::string, std::string>> ignored;
  /// What the family says of the model's structure (its `structure:` block).
  std::vector<StructureHint> structure;
};

struct FamilyImpl;

class Family {
 public:
  Family();
  ~Family();
  Family(Family&&) noexcept;
  Family& operator=(Family&&) noexcept;

  const std::string& name() const;
  const std::string& file() const;
  /// The model types this family covers ("llama", "mistral", ...).
  std::vector<std::string> model_types() const;
  bool covers(const std::string& model_type, const std::string& architecture) const;
  /// The model classes the family's tensor list describes (`LlamaForCausalLM`, ...).
  const std::vector<std::string>& architectures() const;
  /// The tensors `config` implies. Missing or absurd config values (zero layers, negative or
  /// overflowing sizes) are errors that name the key, the family file and the config.
  std::optional<FamilyModel> expand(const ModelConfig& config, Diagnostics& diags) const;

  /// Parses a family file; errors (unknown keys, unknown names in expressions) have locations.
  static std::optional<Family> parse(const std::string& text, const std::string& file,
                                     Diagnostics& diags);

 private:
  std::unique_ptr<FamilyImpl> impl_;
};

/// The shipped families (parsed once, on first use).
const std::vector<Family>& shipped_families();
/// The family for a config (by model_type, else by architecture), or nullptr.
const Family* find_family(const ModelConfig& config);
/// Every model type a shipped family covers, sorted.
std::vector<std::string> known_model_types();

}  // namespace layerfreeze
