#include "sources/checkpoint.hpp"

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/facts_builder.hpp"
#include "core/format.hpp"
#include "sources/family.hpp"

namespace layerfreeze {

namespace {

std::string join_first(const std::vector<std::string>& names, size_t n) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < n; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > n) s += ", …";
  return s;
}

// The family's name for a checkpoint's name: identity, or with the base model's prefix added
// (checkpoints saved from BloomModel store `h.0...`, the family says `transformer.h.0...`).
struct NameMap {
  std::string prefix;  // "" or the base prefix the checkpoint lacks
  std::string to_family(const std::string& n, const ModelFacts& fam) const {
    if (prefix.empty() || fam.contains(n)) return n;
    return prefix + n;
  }
  std::string to_checkpoint(const std::string& n) const {
    if (!prefix.empty() && n.rfind(prefix, 0) == 0) return n.substr(prefix.size());
    return n;
  }
};

size_t matches(const ModelFacts& header, const ModelFacts& fam, const std::string& prefix) {
  size_t n = 0;
  for (const auto& p : header.tensors())
    if (fam.contains(p.name) || (!prefix.empty() && fam.contains(prefix + p.name))) ++n;
  return n;
}

// The tied names for a model type no family covers, when the config says they are tied.
std::optional<Tie> generic_tie(const ModelFacts& inv, const ModelConfig& cfg) {
  static const char* inputs[] = {"embed_tokens.weight", "wte.weight", "word_embeddings.weight",
                                 "tok_embeddings.weight", "embed_in.weight"};
  const Tensor* in = nullptr;
  for (const auto& p : inv.tensors()) {
    for (const char* s : inputs) {
      const std::string suffix = s;
      if (p.name == suffix ||
          (p.name.size() > suffix.size() && p.name.compare(p.name.size() - suffix.size() - 1,
                                                           suffix.size() + 1, "." + suffix) == 0)) {
        if (!in || p.name.size() < in->name.size()) in = &p;
      }
    }
  }
  if (!in) return std::nullopt;
  for (const char* out : {"lm_head.weight", "embed_out.weight", "output.weight", "proj_out.weight"})
    if (inv.contains(out)) return Tie{out, in->name, true};
  // Not stored: the name the class gives its output layer (Whisper's is `proj_out`).
  const bool whisper = cfg.model_type.find("whisper") != std::string::npos ||
                       cfg.architecture.rfind("Whisper", 0) == 0;
  return Tie{whisper ? "proj_out.weight" : "lm_head.weight", in->name, true};
}

}  // namespace

std::string config_beside(const std::string& model_path) {
  namespace fs = std::filesystem;
  fs::path p(model_path);
  fs::path c = (fs::is_directory(p) ? p : p.parent_path()) / "config.json";
  std::error_code ec;
  return fs::is_regular_file(c, ec) ? c.string() : "";
}

std::optional<ModelFacts> apply_config(std::optional<ModelFacts> header, const ModelConfig& cfg,
                                       Diagnostics& diags, const Family* given) {
  const Family* family = given ? given : find_family(cfg);
  const std::string type_text =
      cfg.model_type.empty() ? "(no model_type)" : "model_type '" + cfg.model_type + "'";
  if (!family && !header) {
    std::string known;
    for (const auto& t : known_model_types()) known += (known.empty() ? "" : ", ") + t;
    diags.error(
        "unknown-family",
        "config '" + cfg.path + "': no model family for " + type_text +
            (cfg.architecture.empty() ? "" : " (" + cfg.architecture + ")") +
            ", so its tensors cannot be derived from the config alone",
        {cfg.path, 0, 0},
        {"known model types: " + known,
         "give the checkpoint's safetensors file or index (with the config beside it) instead"});
    return std::nullopt;
  }
  if (family && !given && !cfg.architecture.empty() && !family->architectures().empty() &&
      !family->covers("", cfg.architecture)) {
    std::string listed;
    for (const auto& a : family->architectures()) listed += (listed.empty() ? "" : ", ") + a;
    diags.warning(
        "config-architecture-unlisted",
        "config '" + cfg.path + "': family " + family->name() + " describes " + listed + "; " +
            cfg.architecture + " is not among them, so its head or other tensors may differ",
        {cfg.path, 0, 0},
        {header ? "the checkpoint's names are used; a difference is reported below"
                : "plan on the checkpoint's index or safetensors file to see its real tensors"});
  }
  std::optional<FamilyModel> fam;
  if (family) {
    fam = family->expand(cfg, diags);
    if (!fam) return std::nullopt;
  }

  ModelFacts inv;
  FactsBuilder build(inv);
  std::vector<Tie> ties;
  if (!header) {
    inv = std::move(fam->inv);
    inv.registration_order = true;
    ties = fam->ties;
  } else {
    inv = std::move(*header);
    if (fam && !fam->ignored.empty()) {
      // Tensors the model class does not load: apart, as non-parameters.
      auto ignored = [&](const std::string& name) -> const std::string* {
        for (const auto& [prefix, kind] : fam->ignored)
          if (name.rfind(prefix, 0) == 0 ||
              (!fam->base_prefix.empty() && prefix.rfind(fam->base_prefix, 0) == 0 &&
               name.rfind(prefix.substr(fam->base_prefix.size()), 0) == 0))
            return &kind;
        return nullptr;
      };
      build.remove_if([&](const Tensor& p) {
        const std::string* kind = ignored(p.name);
        if (kind) inv.non_params.push_back({p.name, *kind, p.dtype, p.shape, p.shape_known});
        return kind != nullptr;
      });
      for (auto& np : inv.non_params)
        if (const std::string* kind = ignored(np.name))
          np.kind = *kind;  // scales of an ignored layer too
    }
    if (fam) {
      // Which naming the checkpoint uses: the family's, or the base model's without its prefix.
      NameMap map;
      if (!fam->base_prefix.empty() &&
          matches(inv, fam->inv, fam->base_prefix) > matches(inv, fam->inv, ""))
        map.prefix = fam->base_prefix;
      std::vector<std::string> only_ckpt, only_config, other_shape;
      std::vector<char> seen(fam->inv.tensors().size(), 0);  // by family parameter
      for (auto& p : build.annotations()) {
        const std::string fname = map.to_family(p.name, fam->inv);
        auto k = fam->inv.find(fname);
        if (!k) {
          only_ckpt.push_back(p.name);
          continue;
        }
        const Tensor& f = fam->inv.tensors()[*k];
        seen[*k] = 1;
        if (f.name != fname) continue;  // stored under a tied alias: merged below
        if (!p.shape_known) {
          p.shape = f.shape;
          p.numel = f.numel;
          p.shape_known = true;
          if (p.dtype.empty()) p.dtype = f.dtype;
        } else if (p.shape != f.shape) {
          other_shape.push_back(p.name);
        }
        if (p.module_type.empty()) p.module_type = f.module_type;
      }
      for (size_t k = 0; k < fam->inv.tensors().size(); ++k)
        if (!seen[k]) only_config.push_back(map.to_checkpoint(fam->inv.tensors()[k].name));
      if (!only_ckpt.empty() || !only_config.empty()) {
        diags.warning(
            "config-names-differ",
            "config '" + cfg.path + "' (family " + fam->family + ") implies " +
                with_commas(static_cast<int64_t>(fam->inv.tensors().size())) +
                " tensors; the checkpoint has " +
                with_commas(static_cast<int64_t>(inv.tensors().size())) +
                " parameters: " + std::to_string(only_ckpt.size()) + " only in the checkpoint, " +
                std::to_string(only_config.size()) +
                " only in the config; the checkpoint's names are used",
            {cfg.path, 0, 0},
            {"only in the checkpoint: " + (only_ckpt.empty() ? "none" : join_first(only_ckpt, 4)),
             "only in the config: " + (only_config.empty() ? "none" : join_first(only_config, 4))});
      }
      if (!other_shape.empty()) {
        diags.warning("config-shapes-differ",
                      std::to_string(other_shape.size()) +
                          " tensors of the checkpoint have other shapes than config '" + cfg.path +
                          "' implies (family " + fam->family +
                          "); the checkpoint's shapes are used",
                      {cfg.path, 0, 0}, {"first: " + join_first(other_shape, 4)});
      }
      for (const auto& t : fam->ties)
        ties.push_back({map.to_checkpoint(t.alias), map.to_checkpoint(t.canonical), t.by_config});
    } else if (cfg.tie_word_embeddings().value_or(false)) {
      if (auto t = generic_tie(inv, cfg)) ties.push_back(*t);
    }
  }

  // Ties: one tensor under several names, stored once or twice.
  for (const auto& t : ties) {
    const bool stored = inv.contains(t.alias);
    if (!build.tie(t.canonical, t.alias)) continue;
    if (header && t.by_config) {
      std::string why = cfg.tie_word_embeddings()
                            ? "tie_word_embeddings: true"
                            : "no tie_word_embeddings key: the " +
                                  (family ? family->name() : std::string("config")) +
                                  " config class's default (tied) applies";
      inv.source_notes.push_back("'" + t.alias + "' is '" + t.canonical + "' (" + why + ")" +
                                 (stored ? "; the checkpoint stores both names, they are one tensor"
                                         : "; the checkpoint does not store it"));
    }
  }
  if (header && !family) {
    inv.source_notes.push_back(
        "config '" + cfg.path + "': no model family for " + type_text +
        "; names from the checkpoint" +
        (cfg.tie_word_embeddings() ? "" : ", no tie assumed (no tie_word_embeddings key)"));
  }
  // No dtype in the config: the index's total_size tells how many bytes a parameter takes.
  if (header && fam && cfg.dtype.empty() && inv.stored_bytes > 0 && inv.shapes_known() &&
      inv.total_numel() > 0) {
    const int64_t per = inv.stored_bytes / inv.total_numel();
    if (per == 2) {
      for (auto& p : build.annotations())
        if (p.dtype == "float32") p.dtype = "bfloat16";
      inv.source_notes.push_back(
          "config '" + cfg.path + "' has no torch_dtype; the index's total_size (" +
          with_commas(inv.stored_bytes) + " bytes) is 2 bytes per parameter: bfloat16 assumed");
    }
  }
  if (!cfg.architecture.empty())
    inv.model_type = cfg.architecture;
  else if (!cfg.model_type.empty())
    inv.model_type = cfg.model_type;
  inv.config = cfg.path;
  if (family) inv.family = family->name();
  if (fam) inv.family_structure = fam->structure;
  if (!cfg.quantization.empty()) inv.quantization = cfg.quantization;
  inv.config_layers = cfg.layer_counts();
  inv.config_modalities = cfg.modalities();
  inv.config_experts = cfg.expert_count().value_or(0);
  inv.config_mtp_layers = cfg.mtp_layers();
  inv.config_dropout = cfg.dropouts();
  // The notes of the header source about unknown shapes no longer hold once the family filled them.
  if (inv.shapes_known()) {
    auto& n = inv.source_notes;
    n.erase(std::remove_if(
                n.begin(), n.end(),
                [](const std::string& s) { return s.find("shapes unknown") != std::string::npos; }),
            n.end());
  }
  return inv;
}

}  // namespace layerfreeze
