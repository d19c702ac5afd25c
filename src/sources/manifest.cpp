// The JSON manifest: an inventory written as data (`layerfreeze inspect --format json`), so a
// model can be planned on a machine that never loads it.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/discovery_patterns.hpp"
#include "core/facts_builder.hpp"
#include "core/json_text.hpp"
#include "layerfreeze/model_source.hpp"
#include "sources/json_file.hpp"
#include "sources/readers.hpp"
#include "sources/weight_map.hpp"

namespace layerfreeze {

namespace {

// The keys a manifest may hold at each level: what `inspect --format json` writes (what the
// reader does not use — roles, layers, the structure — is discovery's to find again). Anything
// else is a typo or another format, and an error: a misspelt `dtpye` would silently make every
// memory figure 0 B.
const std::vector<std::string> kTopKeys = {"format", "model",  "params", "non_parameters",
                                           "notes",  "stacks", "towers", "connectors"};
const std::vector<std::string> kModelKeys = {
    "source",     "type",          "registration_order", "quantization",      "family",
    "config",     "config_layers", "config_modalities",  "config_mtp_layers", "num_experts",
    "num_layers", "numel",         "parameters",         "family_structure",  "config_dropout"};
const std::vector<std::string> kParamKeys = {"name",      "shape",       "dtype", "module_type",
                                             "aliases",   "role",        "layer", "tower",
                                             "connector", "expert_part", "expert"};
const std::vector<std::string> kDtypes = {
    "float32", "bfloat16", "float16", "float64",   "float8_e4m3fn", "float8_e5m2",
    "int64",   "int32",    "int16",   "int8",      "uint8",         "uint16",
    "uint32",  "uint64",   "bool",    "complex64", "complex128"};

// Unknown keys of `object` (at `where`) are errors, each with a "did you mean".
void check_keys(const nlohmann::json& object, const std::vector<std::string>& known,
                const std::string& where, const SourceLoc& loc, Diagnostics& diags) {
  for (const auto& item : object.items()) {
    if (std::find(known.begin(), known.end(), item.key()) != known.end()) continue;
    diags.error("manifest-unknown-field",
                where + ": unknown field '" + item.key() + "'" + did_you_mean(item.key(), known),
                loc, {"a manifest is what `layerfreeze inspect --format json` writes"});
  }
}

// A dtype is a name dtype_bytes knows ("float32"); a safetensors code ("F32") says which.
bool check_dtype(const std::string& dtype, const std::string& where, const SourceLoc& loc,
                 Diagnostics& diags) {
  if (dtype_bytes(dtype) > 0) return true;
  const std::string named = dtype_of_safetensors_code(dtype);
  diags.error("manifest-dtype",
              where + ": unknown dtype '" + dtype + "'" +
                  (named.empty() ? did_you_mean(dtype, kDtypes)
                                 : " (the safetensors code of '" + named + "')"),
              loc, {"dtypes are LibTorch's names: float32, bfloat16, float16, int64, …"});
  return false;
}

}  // namespace

std::optional<ModelFacts> parse_manifest_facts(const std::string& text, const std::string& origin,
                                               Diagnostics& diags) {
  // The one JSON reader: located syntax errors, trailing text, and numbers no JSON type holds
  // ("1e400", which nlohmann reports as out_of_range rather than as a parse error).
  auto parsed = parse_json_text(text, origin, "manifest", diags);
  if (!parsed) return std::nullopt;
  const nlohmann::json& j = *parsed;
  SourceLoc loc{origin, 0, 0};
  if (!j.is_object() || !j.contains("params") || !j["params"].is_array()) {
    diags.error("manifest-format", "a manifest is a JSON object with a 'params' list", loc);
    return std::nullopt;
  }
  if (j["params"].size() > kMaxModelTensors) {
    diags.error("manifest-too-large",
                "the manifest lists " + std::to_string(j["params"].size()) +
                    " parameters; the limit is " + std::to_string(kMaxModelTensors),
                loc);
    return std::nullopt;
  }
  check_keys(j, kTopKeys, "the manifest", loc, diags);
  ModelFacts inv;
  inv.source = origin;
  if (j.contains("model") && !j["model"].is_object())
    diags.error("manifest-format", "'model' must be an object", loc);
  if (j.contains("model") && j["model"].is_object()) {
    const auto& m = j["model"];
    check_keys(m, kModelKeys, "model", loc, diags);
    if (m.contains("type") && m["type"].is_string()) inv.model_type = m["type"];
    if (m.contains("registration_order") && m["registration_order"].is_boolean())
      inv.registration_order = m["registration_order"];
    if (m.contains("quantization") && m["quantization"].is_string())
      inv.quantization = m["quantization"];
    if (m.contains("family") && m["family"].is_string()) inv.family = m["family"];
    if (m.contains("num_experts") && m["num_experts"].is_number_integer())
      inv.config_experts = m["num_experts"].get<int64_t>();
    // What the config said, which discovery uses (towers found by the config, count checks).
    if (m.contains("config_modalities") && m["config_modalities"].is_array())
      for (const auto& x : m["config_modalities"])
        if (x.is_string()) inv.config_modalities.push_back(x);
    // What the family said of the structure (discovery compiles the patterns: a bad one is an
    // error there). Bounded like every list a manifest carries.
    if (m.contains("family_structure")) {
      const auto& list = m["family_structure"];
      if (!list.is_array() || list.size() > 1000)
        diags.error("manifest-format",
                    "model.family_structure must be a list of at most 1,000 {kind, pattern}", loc);
      else
        for (const auto& h : list) {
          if (!h.is_object() || !h.contains("kind") || !h["kind"].is_string() ||
              !is_discovery_kind(h["kind"].get<std::string>()) || !h.contains("pattern") ||
              !h["pattern"].is_string() || (h.contains("modality") && !h["modality"].is_string())) {
            diags.error("manifest-format",
                        "model.family_structure: each entry is {kind, pattern, modality?} with a "
                        "kind of rules/discovery.yaml (trunk, towers, connectors, …)",
                        loc);
            break;
          }
          StructureHint x{h["kind"], h["pattern"], ""};
          if (h.contains("modality")) x.modality = h["modality"];
          inv.family_structure.push_back(std::move(x));
        }
    }
    if (m.contains("config_mtp_layers") && m["config_mtp_layers"].is_number_integer())
      inv.config_mtp_layers = std::max<int64_t>(0, m["config_mtp_layers"].get<int64_t>());
    if (m.contains("config_dropout")) {
      // {"attention_dropout": 0.1, …}: probabilities in (0, 1), at most 64 of them.
      const auto& d = m["config_dropout"];
      bool ok = d.is_object() && d.size() <= 64;
      for (auto it = d.begin(); ok && it != d.end(); ++it)
        ok = it.key().size() <= 200 && it.value().is_number() && it.value().get<double>() > 0 &&
             it.value().get<double>() < 1;
      if (!ok)
        diags.error("manifest-format",
                    "model.config_dropout must be an object of at most 64 dropout probabilities "
                    "in (0, 1)",
                    loc);
      else
        for (const auto& [k, v] : d.items()) inv.config_dropout.emplace_back(k, v.get<double>());
    }
    if (m.contains("config_layers") && m["config_layers"].is_object())
      for (const auto& [k, v] : m["config_layers"].items())
        if (v.is_number_integer()) inv.config_layers.emplace_back(k, v.get<int64_t>());
  }
  size_t i = 0;
  for (const auto& p : j["params"]) {
    std::string where = "params[" + std::to_string(i++) + "]";
    if (!p.is_object() || !p.contains("name") || !p["name"].is_string()) {
      diags.error("manifest-format", where + " needs a string 'name'", loc);
      continue;
    }
    Tensor q;
    q.name = p["name"];
    check_keys(p, kParamKeys, where + " ('" + q.name + "')", loc, diags);
    if (inv.contains(q.name)) {
      diags.error("duplicate-name", where + ": '" + q.name + "' is listed twice", loc);
      continue;
    }
    if (p.contains("shape") && p["shape"].is_array()) {
      q.numel = 1;
      bool ok = true;
      for (const auto& d : p["shape"]) {
        if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40))
          ok = false;
        else {
          int64_t v = static_cast<int64_t>(d.get<uint64_t>());
          if (v != 0 && q.numel > (int64_t{1} << 52) / v) ok = false;
          q.shape.push_back(v);
          q.numel *= v;
        }
      }
      if (!ok) {
        diags.error("manifest-format",
                    where + " ('" + q.name + "'): bad shape " + json_text(p["shape"]), loc);
        continue;
      }
    } else if (p.contains("shape") && !p["shape"].is_null()) {
      diags.error("manifest-format", where + " ('" + q.name + "'): shape must be a list or null",
                  loc);
      continue;
    } else {
      q.shape_known = false;
      q.numel = 0;
    }
    if (p.contains("dtype") && !p["dtype"].is_null()) {
      if (!p["dtype"].is_string()) {
        diags.error("manifest-format",
                    where + " ('" + q.name + "'): dtype must be a string or null", loc);
        continue;
      }
      q.dtype = p["dtype"];
      if (!check_dtype(q.dtype, where + " ('" + q.name + "')", loc, diags)) continue;
    }
    if (p.contains("module_type") && p["module_type"].is_string()) q.module_type = p["module_type"];
    std::vector<std::string> aliases;
    if (p.contains("aliases") && p["aliases"].is_array())
      for (const auto& a : p["aliases"])
        if (a.is_string()) aliases.push_back(a);
    FactsBuilder build(inv);
    uint32_t idx = build.add(std::move(q));
    for (const auto& a : aliases)
      if (!build.add_alias(inv.tensors()[idx].name, a))
        diags.error("duplicate-name", where + ": alias '" + a + "' is already a name", loc);
  }
  // Stored tensors that are not parameters: kept apart, as the source that wrote them did.
  if (j.contains("non_parameters") && j["non_parameters"].is_array()) {
    for (const auto& n : j["non_parameters"]) {
      if (!n.is_object() || !n.contains("name") || !n["name"].is_string()) continue;
      NonParameter np;
      np.name = n["name"];
      if (n.contains("kind") && n["kind"].is_string()) np.kind = n["kind"];
      if (inv.contains(np.name)) {
        diags.error("duplicate-name", "non_parameters: '" + np.name + "' is also a parameter", loc);
        continue;
      }
      inv.non_params.push_back(std::move(np));
    }
  }
  if (diags.has_errors()) return std::nullopt;
  if (!inv.registration_order) FactsBuilder(inv).sort_natural();
  return inv;
}

std::optional<ModelFacts> read_manifest(const std::string& path, Diagnostics& diags) {
  constexpr uintmax_t kMaxManifestBytes = uintmax_t{256} << 20;
  FileRead how = model_file_read("manifest", kMaxManifestBytes);
  how.too_large_code = "manifest-too-large";
  auto text = read_file(path, path, how, diags);
  if (!text) return std::nullopt;
  return parse_manifest_facts(*text, path, diags);
}

}  // namespace layerfreeze
