// The parsed form of a model family file (docs/FAMILIES.md), shared by its parser
// (family_parser.cpp) and its expander (family.cpp), and the limits both enforce.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/discovery_patterns.hpp"
#include "core/expr.hpp"
#include "core/yaml_reader.hpp"
#include "layerfreeze/diagnostics.hpp"
#include "sources/weight_map.hpp"

namespace layerfreeze {

namespace family_limits {
constexpr int64_t kMaxRepeat = 100000;
constexpr int64_t kMaxDim = int64_t{1} << 40;
constexpr int64_t kMaxNumel = int64_t{1} << 52;
constexpr size_t kMaxTensors = kMaxModelTensors;  // sources/weight_map.hpp
/// Items visited while expanding (both passes): ten per tensor allowed, conditions included.
constexpr size_t kMaxExpansionSteps = 10 * kMaxTensors;
constexpr int kMaxNesting = 64;
constexpr size_t kMaxDeclarations = 100000;  // tensors and groups a family file declares
}  // namespace family_limits

// The parsed form of a family file (named, so FamilyImpl may hold it).
namespace family_detail {

struct TensorDecl {
  Expr name;
  std::vector<Expr> shape;
  Expr type;  // a module type, may be a template (`${norm}`)
  std::string dtype;
  Expr cond;
  SourceLoc loc;
};

// Another family's tensors for one section of the config (`{family: clip_vision, config:
// vision_config, prefix: vision_tower.}`): a composite model (LLaVA = a CLIP vision tower, a
// projector, a Llama) written as its parts.
struct PartDecl {
  std::string family;   // a shipped family's name
  std::string section;  // the config section it reads ("vision_config"); "" for the whole config
  Expr prefix, cond;
  // `rename: [FROM, TO]`: a name of the part that starts with FROM starts with TO instead
  // (Idefics3 keeps Llama's `model.layers` as `model.text_model.layers`); before the prefix.
  std::string rename_from, rename_to;
  bool renames = false;
  // `set: {key: EXPR}`: values of the part's config section the composite decides (InternVL's
  // tie is the top-level config's, not its text_config's)
  std::vector<std::pair<std::string, Expr>> sets;
  SourceLoc loc;
};

struct Block;
struct Item {
  std::shared_ptr<Block> block;  // a group or a repeat; else `part`, else `tensor`
  std::shared_ptr<PartDecl> part;
  TensorDecl tensor;
};

struct Block {
  std::string var;  // the repeat's index name; "" for a plain group
  Expr repeat;      // empty for a plain group
  Expr prefix;      // prepended to the names inside
  Expr cond;
  std::vector<Item> items;
  SourceLoc loc;
};

struct TieDecl {
  Expr alias, canonical, cond;
};

// Checkpoint tensors under a prefix that the model class does not load (DeepSeek-V3's
// multi-token-prediction layer): not parameters of the model.
struct IgnoreDecl {
  Expr prefix, cond;
  std::string kind;
};

struct ConfigKey {
  std::string key;
  Value fallback;  // null: required
  Expr expr;       // a `${...}` default
  SourceLoc loc;
};

}  // namespace family_detail

struct FamilyImpl {
  std::string name, file, base_prefix;
  std::map<std::string, std::map<std::string, Value>> model_types;  // type -> overrides
  std::vector<std::string> architectures;
  DiscoveryPatterns structure;  // `structure:`: a discovery block (trunk, towers, connectors, …)
  // architecture -> overrides: what a task model adds to the base model (`BertForMaskedLM`'s
  // prefix and prediction head), over the model type's
  std::map<std::string, std::map<std::string, Value>> architecture_overrides;
  std::vector<family_detail::ConfigKey> keys;
  std::vector<family_detail::Item> items;
  std::vector<family_detail::TieDecl> ties;
  std::vector<family_detail::IgnoreDecl> ignores;
  std::set<std::string> loop_vars;  // the names `as:` binds
};

/// Parses a family file's YAML (errors with the code `family-format`).
std::optional<FamilyImpl> parse_family(const YAML::Node& root, const std::string& file,
                                       Diagnostics& diags);

}  // namespace layerfreeze
