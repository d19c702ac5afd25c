#include "core/layer_discovery.hpp"
#include "core/experts.hpp"
#include "core/regex.hpp"

#include <re2/re2.h>
#include <re2/set.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>

#include "core/embedded_rules.hpp"
#include "core/structure_draft.hpp"
#include "core/towers.hpp"

namespace layerfreeze {

namespace {

// One candidate container of a name: the key with the index marked '#', and the index.
struct Candidate {
  std::string key;
  int64_t index;
};

// Candidates of `name`, outermost first: "a.b.3.c" offers "a.b.#"; "layer2.0.x" offers
// "layer#" (2) and then "layer2.#" (0).
void candidates_of(const std::string& name, std::vector<Candidate>& out) {
  out.clear();
  size_t start = 0;
  while (start < name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) break;  // the leaf ("weight") is never a container index
    size_t d = end;
    while (d > start && std::isdigit(static_cast<unsigned char>(name[d - 1]))) --d;
    bool whole = d == start && start > 0;  // "a.b.3.c": the component is the index
    bool glued = d > start && d < end;     // "layer2.c": a name with the index glued on
    if ((whole || glued) && end - d <= 9) {
      int64_t index = 0;
      for (size_t k = d; k < end; ++k) index = index * 10 + (name[k] - '0');
      Candidate c;
      c.key.reserve(d + 1);
      c.key.append(name, 0, d);
      c.key.push_back('#');
      c.index = index;
      out.push_back(std::move(c));
    }
    start = end + 1;
  }
}

std::string container_of(const std::string& key) {
  // "encoder.block.#" -> "encoder.block"; "layer#" -> "layer";
  // "encoder.layers.encoder_layer_#" -> "encoder.layers.encoder_layer"
  std::string c = key.substr(0, key.size() - 1);
  while (!c.empty() && (c.back() == '.' || c.back() == '_')) c.pop_back();
  return c;
}

std::string layer_name(const std::string& key, int64_t index) {
  return key.substr(0, key.size() - 1) + std::to_string(index);
}

// The path under which a stack's own non-layer parameters live ("encoder" for encoder.block).
std::string stack_root(const std::string& container) {
  auto dot = container.rfind('.');
  return dot == std::string::npos ? "" : container.substr(0, dot);
}

bool under(const std::string& name, const std::string& root) {
  return !root.empty() && name.size() > root.size() && name.compare(0, root.size(), root) == 0 &&
         name[root.size()] == '.';
}

int stack_rank(const std::string& container, const std::vector<std::string>& order) {
  size_t start = 0;
  int best = static_cast<int>(order.size());
  while (start <= container.size()) {
    size_t end = container.find('.', start);
    if (end == std::string::npos) end = container.size();
    std::string comp = container.substr(start, end - start);
    for (size_t i = 0; i < order.size(); ++i)
      if (comp == order[i] || comp.rfind(order[i] + "_", 0) == 0)
        best = std::min(best, static_cast<int>(i));
    start = end + 1;
  }
  return best;
}

// The config as an oracle (docs/ARCHITECTURES.md, "The config as an oracle"): the trunk must
// have the language model's layer count the config states — or, for a dual encoder, be made of
// stacks whose counts the config states one by one; an encoder–decoder's counts are each a trunk
// stack's; a vision or audio count is some stack's. Anything else is a contradiction the plan
// shows in every format (an error under --strict).
void check_config_layers(const Inventory& inv, Diagnostics& diags) {
  std::string seen;
  for (const auto& st : inv.stacks)
    seen += (seen.empty() ? "" : ", ") + st.container + " (" + std::to_string(st.num_layers) +
            (st.tower >= 0 ? ", " + inv.towers[static_cast<size_t>(st.tower)].modality + " tower"
                           : std::string()) +
            ")";
  const std::string found = seen.empty() ? "discovery found no layers" : "stacks found: " + seen;
  auto warn = [&](const std::string& what) {
    diags.warning("config-layers-mismatch",
                  (inv.facts().config.empty() ? std::string("the model's config")
                                              : "config '" + inv.facts().config + "'") +
                      " says " + what,
                  {inv.facts().config, 0, 0},
                  {"a checkpoint that does not match its config, or names discovery does not "
                   "know: `layerfreeze inspect` shows what was found; a rules file's `discovery: "
                   "trunk:` says which stack is the language model"});
  };
  // Each count the config states is one stack's, a different stack for each: the stack with
  // that count whose path names the count's part (`encoder_layers` → `model.encoder.layers`),
  // else any with that count. A vision or audio count may be a tower's; the others are the
  // trunk's.
  auto take = [&](const std::string& key, int64_t count, bool trunk_only, std::vector<char>& used) {
    int best = -1, best_score = -1;
    for (size_t s = 0; s < inv.stacks.size(); ++s) {
      const Stack& st = inv.stacks[s];
      if (used[s] || st.num_layers != count || (trunk_only && st.tower >= 0)) continue;
      int score = 0;
      for (const char* w : {"encoder", "decoder", "vision", "audio"})
        score += key.find(w) != std::string::npos && st.container.find(w) != std::string::npos;
      if (score > best_score) {
        best = static_cast<int>(s);
        best_score = score;
      }
    }
    if (best >= 0) used[static_cast<size_t>(best)] = 1;
    return best >= 0;
  };
  // An encoder–decoder: the config counts a decoder, or the trunk is an encoder beside its
  // decoder (T5's config may state `num_layers` alone).
  bool encoder_decoder = config_counts_decoder(inv);
  bool has_encoder = false, has_decoder = false;
  for (const auto& st : inv.stacks)
    if (st.tower < 0) {
      has_encoder = has_encoder || st.container.find("encoder") != std::string::npos;
      has_decoder = has_decoder || st.container.find("decoder") != std::string::npos;
    }
  encoder_decoder = encoder_decoder || (has_encoder && has_decoder);
  const auto* text = text_layer_count(inv);
  std::vector<char> used(inv.stacks.size(), 0);
  if (text && !encoder_decoder && inv.trunk_layers != text->second) {
    // A dual encoder (CLIP): every trunk stack is a count the config states, the language
    // model's among them.
    std::vector<char> dual_used(inv.stacks.size(), 0);
    bool dual = take(text->first, text->second, true, dual_used);
    for (const auto& kv : inv.facts().config_layers)
      if (&kv != text) take(kv.first, kv.second, true, dual_used);
    for (size_t s = 0; s < inv.stacks.size(); ++s)
      dual = dual && (inv.stacks[s].tower >= 0 || dual_used[s]);
    if (!dual)
      warn(text->first + " = " + std::to_string(text->second) + ", but the trunk has " +
           std::to_string(inv.trunk_layers) + (inv.trunk_layers == 1 ? " layer" : " layers") +
           " and no split of the stacks agrees (" + found + ")");
  }
  for (const auto& kv : inv.facts().config_layers) {
    if (&kv == text && !encoder_decoder) continue;  // checked above, against the trunk
    const bool modality = is_modality_count(kv.first);
    if (!take(kv.first, kv.second, !modality, used))
      warn(kv.first + " = " + std::to_string(kv.second) + ", but no " +
           (modality ? "stack" : "trunk stack") + " left has that count (" + found + ")");
  }
}

// A header-only source does not record the order of its towers. One that reads the input (it
// has patch or position embeddings outside its layers) comes before one that reads another
// tower's output (DeepSeek-OCR2's SAM encoder feeds its Qwen2 encoder); otherwise name order.
template <class InLayer>
void order_towers_by_input(Inventory& inv, ModalitySplit& split, std::vector<int32_t>& tower_of_key,
                           const std::vector<std::unique_ptr<RE2>>& emb_res, InLayer in_layer) {
  const size_t T = inv.towers.size();
  if (T < 2) return;
  std::vector<bool> reads_input(T, false);
  for (size_t i = 0; i < inv.params().size(); ++i) {
    int32_t t = split.param_tower[i];
    if (t < 0 || in_layer(i) || reads_input[static_cast<size_t>(t)]) continue;
    for (const auto& re : emb_res)
      if (re && RE2::FullMatch(inv.params()[i].name, *re))
        reads_input[static_cast<size_t>(t)] = true;
  }
  std::vector<int32_t> order(T);
  for (size_t t = 0; t < T; ++t) order[t] = static_cast<int32_t>(t);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return reads_input[a] > reads_input[b]; });
  std::vector<int32_t> rank(T);
  std::vector<Tower> sorted;
  std::string note = "the checkpoint does not record the order of its " + std::to_string(T) +
                     " towers; data flow taken as ";
  for (size_t k = 0; k < T; ++k) {
    rank[static_cast<size_t>(order[k])] = static_cast<int32_t>(k);
    const Tower& t = inv.towers[static_cast<size_t>(order[k])];
    note += (k ? " → " : "") + t.root + (reads_input[order[k]] ? " (it embeds the input)" : "");
    sorted.push_back(t);
  }
  inv.towers = std::move(sorted);
  for (auto& t : split.param_tower)
    if (t >= 0) t = rank[static_cast<size_t>(t)];
  for (auto& t : tower_of_key)
    if (t >= 0) t = rank[static_cast<size_t>(t)];
  inv.notes.push_back(note +
                      ": a tower that embeds the input first, then by name (a rules file's "
                      "`discovery: towers:` order, or a live module, says otherwise)");
}

// Puts a header-only multimodal inventory in data-flow order: each tower (its embeddings, its
// layers, the rest), the connectors, the trunk's embeddings, its layers (each followed by the
// `other` parameters that open with it), its head. Names keep their natural order within a rank.
template <class IsEmbedding>
void order_by_data_flow(Inventory& inv, IsEmbedding is_embedding) {
  struct Key {
    int64_t part, rank, layer;
  };
  const int64_t T = static_cast<int64_t>(inv.towers.size());
  std::vector<Key> keys(inv.params().size());
  for (size_t i = 0; i < inv.params().size(); ++i) {
    const Param& p = inv.params()[i];
    switch (p.role) {
      case Role::kTower:
        keys[i] = {p.part, p.layer >= 0 ? 1 : is_embedding(p.name) ? 0 : 2, p.layer};
        break;
      case Role::kConnector: keys[i] = {T, p.part, 0}; break;
      case Role::kEmbeddings: keys[i] = {T + 1, 0, 0}; break;
      case Role::kLayer: keys[i] = {T + 1, 1, 2 * static_cast<int64_t>(p.layer)}; break;
      case Role::kOther: keys[i] = {T + 1, 1, 2 * static_cast<int64_t>(p.anchor_layer) + 1}; break;
      case Role::kHead: keys[i] = {T + 1, 2, 0}; break;
      case Role::kMtp: keys[i] = {T + 1, 3, 0}; break;
    }
  }
  std::vector<uint32_t> order(inv.params().size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const Key &x = keys[a], &y = keys[b];
    return std::tie(x.part, x.rank, x.layer) < std::tie(y.part, y.rank, y.layer);
  });
  std::vector<uint32_t> new_index(order.size());
  for (size_t k = 0; k < order.size(); ++k) new_index[order[k]] = static_cast<uint32_t>(k);
  StructureDraft(inv).reorder(order);
  for (auto& l : inv.layers) {
    for (auto& q : l.params) q = new_index[q];
    std::sort(l.params.begin(), l.params.end());
  }
}

// "vision tower 'visual' (32 layers) → connector 'visual.merger' → trunk (28 layers)".
std::string describe_parts(const Inventory& inv) {
  std::string s = "data flow: ";
  for (const auto& t : inv.towers) {
    s += t.modality + " tower '" + t.root + "' (";
    s += t.num_layers ? std::to_string(t.num_layers) + (t.num_layers == 1 ? " layer" : " layers")
                      : "no layers";
    s += "; found by " + t.found_by + ") → ";
  }
  for (size_t c = 0; c < inv.connectors.size(); ++c)
    s += std::string(c ? ", '"
                       : "connector" + std::string(inv.connectors.size() > 1 ? "s '" : " '")) +
         inv.connectors[c].root + "'";
  if (!inv.connectors.empty()) s += " → ";
  return s + "trunk (" + std::to_string(inv.trunk_layers) +
         (inv.trunk_layers == 1 ? " layer" : " layers") +
         "): layer indices, ratios and presets count the trunk's layers";
}

}  // namespace

namespace {

// One discovery run, stage by stage: match keys → stacks → trunk/towers → layout → roles.
// Each stage reads what the ones before left in the members.
class Discovery {
 public:
  Discovery(Inventory& inv, const DiscoveryPatterns& patterns, Diagnostics& diags)
      : inv_(inv), edit_(inv), patterns_(patterns), diags_(diags), hits_(inv.params().size()) {}

  void run() {
    reset();
    mark_mtp_by_name();
    match_keys();
    if (!any_hit_) fallback();
    collect_stacks();
    mark_mtp_by_config();
    split();
    lay_out_stacks();
    assign_roles();
    if (!mtp_notes_.empty()) {
      std::string note = "multi-token prediction: ";
      for (size_t k = 0; k < mtp_notes_.size(); ++k) note += (k ? ", " : "") + mtp_notes_[k];
      inv_.notes.push_back(note +
                           ": not layers; role mtp, frozen unless a rule names `mtp` (the "
                           "model's forward does not run it)");
    }
    if (inv_.multimodal()) {
      if (!inv_.facts().registration_order)
        order_by_data_flow(inv_, [&](const std::string& name) { return is_embedding(name); });
      inv_.notes.push_back(describe_parts(inv_));
    }
    check_config_layers(inv_, diags_);
  }

 private:
  struct KeyInfo {
    std::string key;
    int pattern;  // -1: no pattern matches
  };
  struct Hit {
    int32_t key = -1;  // id in keys_
    int64_t index = 0;
  };

  void reset() {
    inv_.stacks.clear();
    inv_.layers.clear();
    inv_.notes.clear();
    inv_.towers.clear();
    inv_.connectors.clear();
    inv_.trunk_layers = 0;
    edit_.place_all([](Placement& p) { p.part = -1; });
    for (const auto& p : patterns_.layers)
      layer_res_.push_back(compile_pattern(p, "layer", diags_));
    for (const auto& p : patterns_.embeddings)
      emb_res_.push_back(compile_pattern(p, "embeddings", diags_));
    for (const auto& p : patterns_.head) head_res_.push_back(compile_pattern(p, "head", diags_));
    for (const auto& p : patterns_.mtp) mtp_res_.push_back(compile_pattern(p, "mtp", diags_));
    mtp_.assign(inv_.params().size(), 0);
  }

  // 0. Multi-token-prediction blocks by name: a prefix of the part above the first index
  // (`model.mtp_layers` of `model.mtp_layers.0.x`) that an `mtp` pattern matches. Such names
  // are never layers; each distinct part is matched once.
  void mark_mtp_by_name() {
    if (mtp_res_.empty()) return;
    std::unordered_map<std::string, std::string> root_of;  // part above the index -> root
    std::map<std::string, size_t> roots;                   // root -> tensors
    for (size_t i = 0; i < inv_.params().size(); ++i) {
      const std::string& name = inv_.params()[i].name;
      std::string part = name.substr(0, above_first_index(name));
      auto it = root_of.find(part);
      if (it == root_of.end()) {
        std::string root;
        for (size_t end = part.find('.');; end = part.find('.', end + 1)) {
          std::string prefix = part.substr(0, end);
          for (const auto& re : mtp_res_)
            if (!prefix.empty() && re && RE2::FullMatch(prefix, *re)) root = prefix;
          if (!root.empty() || end == std::string::npos) break;
        }
        it = root_of.emplace(part, root).first;
      }
      if (it->second.empty()) continue;
      mtp_[i] = 1;
      ++roots[it->second];
    }
    for (const auto& [root, count] : roots)
      mtp_notes_.push_back("'" + root + "' (" + std::to_string(count) +
                           (count == 1 ? " tensor" : " tensors") + "; found by its name)");
  }

  // 2b. The config's multi-token-prediction layers stored as extra layers of a trunk stack
  // (DeepSeek-V3's `model.layers.61`, GLM-4.5's `model.layers.46`): a stack of C + k layers,
  // indices 0..C+k-1, where the config says C layers and k such blocks. Its last k are mtp.
  void mark_mtp_by_config() {
    const int64_t k = inv_.facts().config_mtp_layers;
    const auto* count = text_layer_count(inv_);
    if (k <= 0 || !count) return;
    const int64_t C = count->second;
    for (size_t c = 0; c < stack_keys_.size(); ++c) {
      const int32_t key = stack_keys_[c];
      auto& idx = indices_[static_cast<size_t>(key)];
      if (static_cast<int64_t>(idx.size()) != C + k || idx.front() != 0 || idx.back() != C + k - 1)
        continue;
      size_t tensors = 0;
      for (size_t i = 0; i < hits_.size(); ++i)
        if (hits_[i].key == key && hits_[i].index >= C) {
          hits_[i].key = -1;
          mtp_[i] = 1;
          ++tensors;
        }
      idx.resize(static_cast<size_t>(C));
      candidates_[c].num_layers = static_cast<int32_t>(C);
      std::string first = layer_name(keys_[static_cast<size_t>(key)].key, C);
      mtp_notes_.push_back(
          "'" + first + (k > 1 ? "' and after" : "'") + " (" + std::to_string(tensors) +
          " tensors; found by the config: " + count->first + " = " + std::to_string(C) +
          ", num_nextn_predict_layers = " + std::to_string(k) + ")");
      return;
    }
  }

  // A container key's id; each distinct key is matched against the layer patterns once.
  int32_t key_id(const std::string& key) {
    auto it = key_ids_.find(key);
    if (it != key_ids_.end()) return it->second;
    int found = -1;
    for (size_t i = 0; i < layer_res_.size() && found < 0; ++i)
      if (layer_res_[i] && RE2::FullMatch(key, *layer_res_[i])) found = static_cast<int>(i);
    int32_t id = static_cast<int32_t>(keys_.size());
    keys_.push_back({key, found});
    key_ids_.emplace(key, id);
    return id;
  }

  // 1. The outermost container key of each name that a layer pattern matches. Keys repeat
  // across thousands of names: the per-name work is a scan and a hash lookup.
  void match_keys() {
    std::string buf;  // reused: no allocation per name once it has grown
    for (size_t i = 0; i < inv_.params().size(); ++i) {
      if (mtp_[i]) continue;
      const std::string& name = inv_.params()[i].name;
      // The candidates of candidates_of(), outermost first, stopping at the first match.
      for (size_t start = 0, end; start < name.size(); start = end + 1) {
        end = name.find('.', start);
        if (end == std::string::npos) break;
        size_t d = end;
        while (d > start && std::isdigit(static_cast<unsigned char>(name[d - 1]))) --d;
        bool whole = d == start && start > 0, glued = d > start && d < end;
        if (!(whole || glued) || end - d > 9) continue;
        buf.assign(name, 0, d);
        buf.push_back('#');
        int32_t id = key_id(buf);
        if (keys_[id].pattern < 0) continue;
        int64_t index = 0;
        for (size_t k = d; k < end; ++k) index = index * 10 + (name[k] - '0');
        hits_[i] = Hit{id, index};
        any_hit_ = true;
        break;
      }
    }
  }

  // For architectures no pattern knows: the dotted container with the most distinct indices.
  void fallback() {
    std::vector<Candidate> cands;
    std::map<std::string, std::vector<int64_t>> indices;
    for (size_t i = 0; i < inv_.params().size(); ++i) {
      if (mtp_[i]) continue;
      const Param& p = inv_.params()[i];
      candidates_of(p.name, cands);
      if (!cands.empty() && cands[0].key.find('.') != std::string::npos)
        indices[cands[0].key].push_back(cands[0].index);
    }
    std::string best;
    size_t best_n = 0;
    for (auto& [key, idx] : indices) {
      std::sort(idx.begin(), idx.end());
      size_t distinct = static_cast<size_t>(std::unique(idx.begin(), idx.end()) - idx.begin());
      if (distinct > best_n) {
        best_n = distinct;
        best = key;
      }
    }
    if (best_n < 2) {
      inv_.notes.push_back(
          "no repeated blocks found: this model has no layers, so layer selectors cannot be used "
          "(add a `discovery: layers:` pattern if it has some)");
      return;
    }
    int32_t id = key_id(best);
    for (size_t i = 0; i < inv_.params().size(); ++i) {
      candidates_of(inv_.params()[i].name, cands);
      if (!cands.empty() && cands[0].key == best) hits_[i] = Hit{id, cands[0].index};
    }
    inv_.notes.push_back("no discovery pattern matched; the repeated container '" +
                         container_of(best) +
                         "' was found by the generic fallback (add a `discovery: layers:` pattern "
                         "to make it explicit)");
  }

  // 2. One stack candidate per key that has hits, with its distinct indices.
  void collect_stacks() {
    first_seen_.assign(keys_.size(), SIZE_MAX);
    indices_.assign(keys_.size(), {});
    for (size_t i = 0; i < hits_.size(); ++i) {
      if (hits_[i].key < 0) continue;
      first_seen_[hits_[i].key] = std::min(first_seen_[hits_[i].key], i);
      auto& v = indices_[hits_[i].key];
      if (v.empty() || v.back() != hits_[i].index) v.push_back(hits_[i].index);
    }
    for (size_t k = 0; k < keys_.size(); ++k) {
      if (first_seen_[k] == SIZE_MAX) continue;
      auto& idx = indices_[k];
      std::sort(idx.begin(), idx.end());
      idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
      stack_keys_.push_back(static_cast<int32_t>(k));
      candidates_.push_back({container_of(keys_[k].key), static_cast<int32_t>(idx.size())});
    }
  }

  // 3. Trunk, towers and connectors (core/towers.hpp). A stack inside a connector is dissolved.
  void split() {
    split_ = split_modalities(inv_, candidates_, patterns_, diags_);
    for (auto& n : split_.notes) inv_.notes.push_back(std::move(n));
    tower_of_key_.assign(keys_.size(), -1);
    for (size_t c = 0; c < stack_keys_.size(); ++c) {
      tower_of_key_[stack_keys_[c]] = split_.stack_tower[c];
      if (split_.stack_tower[c] == ModalitySplit::kDissolved)
        for (auto& h : hits_)
          if (h.key == stack_keys_[c]) h.key = -1;
    }
    stack_keys_.erase(
        std::remove_if(stack_keys_.begin(), stack_keys_.end(),
                       [&](int32_t k) { return tower_of_key_[k] == ModalitySplit::kDissolved; }),
        stack_keys_.end());
    inv_.towers = std::move(split_.towers);
    inv_.connectors = std::move(split_.connectors);
    if (inv_.multimodal() && !inv_.facts().registration_order)
      order_towers_by_input(inv_, split_, tower_of_key_, emb_res_,
                            [&](size_t i) { return hits_[i].key >= 0; });
  }

  static uint64_t layer_key(int32_t key, int64_t index) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(key)) << 32) ^ static_cast<uint64_t>(index);
  }

  // 4. Stacks in data-flow order: each tower's (input first), then the trunk's (encoder before
  // decoder). Trunk layers are numbered first, 0..L-1; a tower's layers after them.
  void lay_out_stacks() {
    std::stable_sort(stack_keys_.begin(), stack_keys_.end(), [&](int32_t a, int32_t b) {
      auto part = [&](int32_t k) {
        return tower_of_key_[k] < 0 ? static_cast<int32_t>(inv_.towers.size()) : tower_of_key_[k];
      };
      if (part(a) != part(b)) return part(a) < part(b);
      int ra = stack_rank(container_of(keys_[a].key), patterns_.stack_order);
      int rb = stack_rank(container_of(keys_[b].key), patterns_.stack_order);
      if (ra != rb) return ra < rb;
      return first_seen_[a] < first_seen_[b];
    });
    for (int32_t k : stack_keys_) trunk_begin_ += tower_of_key_[k] >= 0;
    inv_.stacks.resize(stack_keys_.size());
    for (int pass = 0; pass < 2; ++pass) {  // trunk layers first, then the towers'
      for (size_t s = 0; s < stack_keys_.size(); ++s) {
        const int32_t k = stack_keys_[s];
        if ((tower_of_key_[k] >= 0) != (pass == 1)) continue;
        Stack& st = inv_.stacks[s];
        st.key = keys_[k].key;
        st.container = container_of(st.key);
        int pat = keys_[k].pattern;
        st.pattern = pat >= 0 ? patterns_.layers[pat].text : "(generic fallback)";
        st.first_layer = static_cast<int32_t>(inv_.layers.size());
        st.num_layers = static_cast<int32_t>(indices_[k].size());
        st.tower = tower_of_key_[k];
        for (int64_t source_index : indices_[k]) {
          layer_of_[layer_key(k, source_index)] = static_cast<int32_t>(inv_.layers.size());
          Layer l;
          l.name = layer_name(st.key, source_index);
          l.stack = static_cast<int32_t>(s);
          l.source_index = source_index;
          inv_.layers.push_back(std::move(l));
        }
        if (pass == 0) inv_.trunk_layers += st.num_layers;
      }
    }
    for (size_t s = 0; s < inv_.stacks.size(); ++s)
      if (inv_.stacks[s].tower >= 0) {
        Tower& t = inv_.towers[static_cast<size_t>(inv_.stacks[s].tower)];
        t.stacks.push_back(static_cast<int32_t>(s));
        t.num_layers += inv_.stacks[s].num_layers;
      }
  }

  bool trunk_param(size_t i) const {
    return split_.param_tower.empty() ||
           (split_.param_tower[i] < 0 && split_.param_connector[i] < 0);
  }
  bool is_embedding(const std::string& name) const {
    for (const auto& re : emb_res_)
      if (re && RE2::FullMatch(name, *re)) return true;
    return false;
  }
  // Under the root of a trunk stack that is not the last one (T5's `encoder.`), a parameter
  // outside the layers sits between two stacks, whatever the order of the source; the first
  // stack's index, or -1.
  int32_t inner_stack_of(const std::string& name) const {
    for (size_t st = trunk_begin_; st + 1 < inv_.stacks.size(); ++st)
      if (under(name, stack_root(inv_.stacks[st].container))) return static_cast<int32_t>(st);
    return -1;
  }
  std::optional<Role> name_role(const std::string& name) const {
    if (is_embedding(name)) return Role::kEmbeddings;
    for (const auto& re : head_res_)
      if (re && RE2::FullMatch(name, *re)) {
        // A "final norm" under a stack that is not the last one sits between two stacks
        // (T5's encoder.final_layer_norm): position, not the name, decides it.
        if (inner_stack_of(name) >= 0) return Role::kOther;
        return Role::kHead;
      }
    return std::nullopt;
  }
  // A norm directly under a trunk stack's root (`model.decoder.layer_norm`,
  // `encoder.final_layer_norm`) closes that stack: the head after the last stack, `other`
  // between two stacks — whatever the order of the source (header-only sources sort
  // `layer_norm` before `layers`).
  std::optional<Role> stack_norm(const std::string& name) const {
    static const RE2 norm_re(
        "(final_)?(layer_?norm|norm|ln)(_f|_out|_post|_final)?\\.(weight|bias)");
    for (size_t st = trunk_begin_; st < inv_.stacks.size(); ++st) {
      std::string root = stack_root(inv_.stacks[st].container);
      if (!under(name, root)) continue;
      if (RE2::FullMatch(re2::StringPiece(name).substr(root.size() + 1), norm_re))
        return st + 1 == inv_.stacks.size() ? Role::kHead : Role::kOther;
    }
    return std::nullopt;
  }

  // Position rules need where the trunk's layers are in this source's order.
  struct Positions {
    size_t first_layer, last_layer = 0;
    std::vector<size_t> stack_first;
  };
  Positions positions() const {
    Positions pos{inv_.params().size(), 0,
                  std::vector<size_t>(inv_.stacks.size(), inv_.params().size())};
    for (size_t i = 0; i < hits_.size(); ++i) {
      if (hits_[i].key < 0 || !trunk_param(i)) continue;
      pos.first_layer = std::min(pos.first_layer, i);
      pos.last_layer = i;
      size_t st = static_cast<size_t>(
          inv_.layers[layer_of_.at(layer_key(hits_[i].key, hits_[i].index))].stack);
      pos.stack_first[st] = std::min(pos.stack_first[st], i);
    }
    return pos;
  }

  // The role of trunk parameter `i` outside the layers: names, then position.
  Role outside_role(size_t i, const Positions& pos) const {
    const std::string& name = inv_.params()[i].name;
    if (auto r = name_role(name)) return *r;
    if (auto n = stack_norm(name)) return *n;
    if (int32_t st = inner_stack_of(name); st >= 0)
      return static_cast<size_t>(st) == trunk_begin_ && i < pos.stack_first[trunk_begin_]
                 ? Role::kEmbeddings
                 : Role::kOther;
    if (inv_.trunk_layers == 0) return Role::kOther;
    if (i < pos.first_layer) return Role::kEmbeddings;
    if (i > pos.last_layer) return Role::kHead;
    return Role::kOther;
  }

  // 5. Roles. A connector or a tower owns what is under its root; in the trunk, layer
  // membership beats everything, then names, then position among the trunk's own parameters.
  void assign_roles() {
    const Positions pos = positions();
    int32_t running_max_layer = -1;
    for (size_t i = 0; i < inv_.params().size(); ++i) {
      const Param& t = inv_.params()[i];
      Placement& p = edit_.place(static_cast<uint32_t>(i));
      p.layer = -1;
      p.anchor_layer = -1;
      if (hits_[i].key >= 0) {
        p.layer = layer_of_.at(layer_key(hits_[i].key, hits_[i].index));
        inv_.layers[p.layer].params.push_back(static_cast<uint32_t>(i));
        inv_.layers[p.layer].numel += t.numel;
      }
      if (mtp_[i]) {
        p.role = Role::kMtp;
      } else if (!trunk_param(i)) {
        bool connector = split_.param_connector[i] >= 0;
        p.role = connector ? Role::kConnector : Role::kTower;
        p.part = connector ? split_.param_connector[i] : split_.param_tower[i];
      } else if (p.layer >= 0) {
        p.role = Role::kLayer;
        running_max_layer = std::max(running_max_layer, p.layer);
      } else {
        p.role = outside_role(i, pos);
      }
      if (p.role == Role::kOther && inv_.trunk_layers > 0) {
        // It opens with the last layer of the stack it sits under, else the layer before it.
        p.anchor_layer = running_max_layer;
        for (size_t s = trunk_begin_; s < inv_.stacks.size(); ++s) {
          const Stack& st = inv_.stacks[s];
          if (under(t.name, stack_root(st.container)))
            p.anchor_layer = st.first_layer + st.num_layers - 1;
        }
      }
      alias_roles(t, p);
    }
  }

  void alias_roles(const Param& t, Placement& p) {
    p.alias_roles.clear();
    std::vector<Candidate> ac;
    for (const auto& a : t.aliases) {
      candidates_of(a, ac);
      bool in_layer = false;
      for (const auto& c : ac)
        if (keys_[key_id(c.key)].pattern >= 0) in_layer = true;
      if (p.role == Role::kTower || p.role == Role::kConnector || p.role == Role::kMtp)
        p.alias_roles.push_back(p.role);
      else if (in_layer)
        p.alias_roles.push_back(Role::kLayer);
      else
        p.alias_roles.push_back(name_role(a).value_or(p.role));
    }
  }

  Inventory& inv_;
  StructureDraft edit_;  // places inv_'s parameters (roles, layers, parts)
  const DiscoveryPatterns& patterns_;
  Diagnostics& diags_;
  std::vector<std::unique_ptr<RE2>> layer_res_, emb_res_, head_res_, mtp_res_;
  std::vector<char> mtp_;               // per parameter: in a multi-token-prediction block
  std::vector<std::string> mtp_notes_;  // what was set aside as mtp, and why
  std::vector<KeyInfo> keys_;
  std::unordered_map<std::string, int32_t> key_ids_;
  std::vector<Hit> hits_;
  bool any_hit_ = false;
  std::vector<size_t> first_seen_;             // per key: first parameter with a hit
  std::vector<std::vector<int64_t>> indices_;  // per key: distinct indices, ascending
  std::vector<int32_t> stack_keys_;            // keys that are stacks, in inv.stacks order
  std::vector<StackCandidate> candidates_;
  ModalitySplit split_;
  std::vector<int32_t> tower_of_key_;
  std::unordered_map<uint64_t, int32_t> layer_of_;  // (key id, source index) -> layer
  size_t trunk_begin_ = 0;                          // the first trunk stack in inv.stacks
};

}  // namespace

void discover_layers(Inventory& inv, const DiscoveryPatterns& patterns, Diagnostics& diags) {
  // From the facts alone: a structure found before (other patterns, another strategy) is
  // dropped, never built on.
  StructureDraft(inv).reset();
  const ModelFacts& facts = inv.facts();
  // A family's structure (a family file's `structure:`) comes first: a model whose family is
  // known gets its trunk, towers and connectors from it; the patterns are the fallback.
  if (!facts.family_structure.empty()) {
    const DiscoveryPatterns all = patterns.merged(
        patterns_from_hints(facts.family_structure, "rules/families/" + facts.family + ".yaml"),
        false);
    Discovery(inv, all, diags).run();
    discover_experts(inv, all, diags);
    return;
  }
  Discovery(inv, patterns, diags).run();
  discover_experts(inv, patterns, diags);
}

Structure discover_structure(std::shared_ptr<const ModelFacts> facts,
                             const DiscoveryPatterns& patterns, Diagnostics& diags) {
  Inventory inv(std::move(facts));
  discover_layers(inv, patterns, diags);
  return inv.structure();
}

}  // namespace layerfreeze

namespace layerfreeze {

std::string describe_layers(const Inventory& inv) {
  if (inv.layers.empty()) return "no layers";
  auto span = [&](const Stack& st) {
    const Layer& a = inv.layers[st.first_layer];
    const Layer& b = inv.layers[st.first_layer + st.num_layers - 1];
    return st.num_layers > 1 ? a.name + "–" + std::to_string(b.source_index) : a.name;
  };
  const int32_t L = inv.num_layers();
  std::string s = std::to_string(L) + (L == 1 ? " layer" : " layers");
  std::string spans;
  for (const auto& st : inv.stacks)
    if (st.tower < 0) spans += (spans.empty() ? "" : ", ") + span(st);
  if (!spans.empty()) s += " (" + spans + ")";
  // A multimodal model's towers, after its trunk: "+ vision tower (32 layers, visual.blocks.0–31)".
  for (size_t t = 0; t < inv.towers.size(); ++t) {
    const Tower& tw = inv.towers[t];
    s += " + " + tw.modality + " tower '" + tw.root + "' (" + std::to_string(tw.num_layers) +
         (tw.num_layers == 1 ? " layer" : " layers");
    for (int32_t st : tw.stacks) s += ", " + span(inv.stacks[static_cast<size_t>(st)]);
    s += ")";
  }
  return s;
}

}  // namespace layerfreeze
