#include "sources/model_config.hpp"

#include "core/json_text.hpp"
#include "sources/json_file.hpp"

namespace layerfreeze {

namespace {

constexpr int kMaxDepth = 4;

// Scalars and lists of scalars become Values; objects recurse with a dotted prefix.
void flatten(const nlohmann::json& j, const std::string& prefix, int depth, Scope& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = prefix + it.key();
    const auto& v = it.value();
    if (v.is_object()) {
      if (depth < kMaxDepth) flatten(v, key + ".", depth + 1, out);
    } else if (v.is_null()) {
      out[key] = Value::null();
    } else if (v.is_boolean()) {
      out[key] = Value::boolean(v.get<bool>());
    } else if (v.is_number_integer()) {
      // Unsigned values past int64 are absurd for a config; keep them as floats so a check fails.
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        out[key] = Value::real(v.get<double>());
      else
        out[key] = Value::integer(v.get<int64_t>());
    } else if (v.is_number_float()) {
      out[key] = Value::real(v.get<double>());
    } else if (v.is_string()) {
      out[key] = Value::string(v.get<std::string>());
    } else if (v.is_array()) {
      std::vector<Value> list;
      bool scalars = true;
      for (const auto& x : v) {
        if (x.is_number_integer())
          list.push_back(Value::integer(x.get<int64_t>()));
        else if (x.is_number_float())
          list.push_back(Value::real(x.get<double>()));
        else if (x.is_string())
          list.push_back(Value::string(x.get<std::string>()));
        else if (x.is_boolean())
          list.push_back(Value::boolean(x.get<bool>()));
        else
          scalars = false;
      }
      if (scalars) out[key] = Value::of_list(std::move(list));
    }
  }
}

std::string normalise_dtype(const std::string& d) {
  if (d == "float" || d == "fp32") return "float32";
  if (d == "half" || d == "fp16") return "float16";
  if (d == "bf16") return "bfloat16";
  if (d.rfind("torch.", 0) == 0) return d.substr(6);
  return d;
}

}  // namespace

const Value* ModelConfig::get(const std::string& key) const {
  auto it = values.find(key);
  return it == values.end() ? nullptr : &it->second;
}

std::optional<int64_t> ModelConfig::integer(const std::string& key) const {
  const Value* v = get(key);
  if (!v || v->kind != Value::Kind::kInt) return std::nullopt;
  return v->i;
}

std::optional<bool> ModelConfig::tie_word_embeddings() const {
  for (const char* k : {"tie_word_embeddings", "text_config.tie_word_embeddings"}) {
    const Value* v = get(k);
    if (v && v->kind == Value::Kind::kBool) return v->b;
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, int64_t>> ModelConfig::layer_counts() const {
  std::vector<std::pair<std::string, int64_t>> out;
  auto first = [&](std::initializer_list<const char*> keys) {
    for (const char* k : keys)
      if (auto n = integer(k)) {
        out.emplace_back(k, *n);
        return;
      }
  };
  if (integer("encoder_layers") || integer("num_decoder_layers")) {
    first({"encoder_layers", "num_layers"});
    first({"decoder_layers", "num_decoder_layers"});
  } else {
    first({"text_config.num_hidden_layers", "text_config.num_layers",
           "language_config.num_hidden_layers", "llm_config.num_hidden_layers", "num_hidden_layers",
           "n_layer", "num_layers", "n_layers"});
  }
  first({"vision_config.depth", "vision_config.num_hidden_layers", "vision_config.num_layers",
         "vision_config.layers"});
  first({"audio_config.num_hidden_layers", "audio_config.encoder_layers"});
  return out;
}

std::optional<int64_t> ModelConfig::expert_count() const {
  for (const char* prefix : {"", "text_config.", "language_config.", "llm_config."})
    for (const char* key :
         {"num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"})
      if (auto n = integer(std::string(prefix) + key); n && *n > 0) return n;
  return std::nullopt;
}

int64_t ModelConfig::mtp_layers() const {
  for (const char* prefix : {"", "text_config.", "language_config.", "llm_config."})
    for (const char* key : {"num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers",
                            "mtp_num_layers", "num_nextn_layers"})
      if (auto n = integer(std::string(prefix) + key); n && *n > 0) return *n;
  return 0;
}

std::vector<std::pair<std::string, double>> ModelConfig::dropouts() const {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [key, v] : values) {
    const auto dot = key.rfind('.');
    const std::string last = dot == std::string::npos ? key : key.substr(dot + 1);
    if (last.find("dropout") == std::string::npos && last.find("pdrop") == std::string::npos)
      continue;
    if (v.is_number() && v.number() > 0 && v.number() < 1) out.emplace_back(key, v.number());
  }
  return out;
}

std::vector<std::string> ModelConfig::modalities() const {
  auto has_section = [&](std::initializer_list<const char*> sections) {
    for (const char* s : sections) {
      auto it = values.lower_bound(std::string(s) + ".");
      if (it != values.end() && it->first.rfind(std::string(s) + ".", 0) == 0) return true;
    }
    return false;
  };
  std::vector<std::string> out;
  // A vision part: its own section, or the keys a LLaVA-style config (`mm_vision_tower`) or a
  // language model with an image encoder (`image_size` and `patch_size` beside a text layer
  // count) states instead.
  bool vision = has_section({"vision_config", "visual", "vision_tower_config", "siglip_config",
                             "clip_config", "vit_config", "image_config"}) ||
                values.count("mm_vision_tower") || values.count("vision_tower") ||
                (values.count("image_size") && values.count("patch_size") &&
                 (values.count("num_hidden_layers") || values.count("n_layer")) &&
                 values.count("vocab_size"));
  if (vision) out.push_back("vision");
  if (has_section({"audio_config", "speech_config", "audio_tower_config"})) out.push_back("audio");
  return out;
}

bool looks_like_config(const nlohmann::json& j) {
  return j.is_object() && !j.contains("weight_map") && !j.contains("params") &&
         (j.contains("model_type") || j.contains("architectures"));
}

std::optional<ModelConfig> model_config_from_json(const nlohmann::json& j, const std::string& path,
                                                  Diagnostics& diags) {
  SourceLoc loc{path, 0, 0};
  if (!j.is_object()) {
    diags.error(
        "config-format",
        "config '" + path + "' is not a JSON object (it is " + std::string(j.type_name()) + ")",
        loc);
    return std::nullopt;
  }
  ModelConfig c;
  c.path = path;
  bool ok = true;
  auto str = [&](const char* key, std::string& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_string()) {
      diags.error("config-value",
                  "config '" + path + "': '" + key + "' must be a string, not " + json_text(j[key]),
                  loc);
      ok = false;
      return;
    }
    out = j[key].get<std::string>();
  };
  str("model_type", c.model_type);
  if (j.contains("architectures") && !j["architectures"].is_null()) {
    const auto& a = j["architectures"];
    if (!a.is_array() || (!a.empty() && !a[0].is_string())) {
      diags.error("config-value",
                  "config '" + path + "': 'architectures' must be a list of class names", loc);
      ok = false;
    } else if (!a.empty()) {
      c.architecture = a[0].get<std::string>();
    }
  }
  std::string dtype;
  str("torch_dtype", dtype);
  if (dtype.empty()) str("dtype", dtype);
  c.dtype = normalise_dtype(dtype);
  if (j.contains("quantization_config") && j["quantization_config"].is_object()) {
    const auto& q = j["quantization_config"];
    std::string method = q.value("quant_method", std::string("quantized"));
    if (method == "bitsandbytes") {
      if (q.value("load_in_4bit", false) || q.value("_load_in_4bit", false))
        method += " " + q.value("bnb_4bit_quant_type", std::string("4-bit"));
      else
        method += " 8-bit";
    } else if (q.contains("bits") && q["bits"].is_number_integer()) {
      method += " " + std::to_string(q["bits"].get<int>()) + "-bit";
    }
    c.quantization = method;
  }
  flatten(j, "", 0, c.values);
  if (!ok) return std::nullopt;
  return c;
}

std::optional<ModelConfig> read_model_config(const std::string& path, Diagnostics& diags) {
  auto j = read_json_file(path, "config", diags, 16ull << 20);
  if (!j) return std::nullopt;
  return model_config_from_json(*j, path, diags);
}

}  // namespace layerfreeze
