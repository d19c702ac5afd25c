#include "core/layer_discovery.hpp"

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
#include "core/towers.hpp"

namespace layerfreeze {

namespace {

std::vector<Pattern> read_patterns(const YAML::Node& node, const std::string& key,
                                   const std::string& file, Diagnostics& diags) {
  std::vector<Pattern> out;
  const YAML::Node list = node[key];
  if (!list) return out;
  if (!list.IsSequence()) {
    diags.error("wrong-type", "'" + key + "' must be a list of patterns",
                {file, list.Mark().line + 1, list.Mark().column + 1});
    return out;
  }
  for (const auto& item : list) {
    if (key == "towers" && item.IsMap() && item["pattern"] && item["pattern"].IsScalar()) {
      Pattern p{item["pattern"].Scalar(), {file, item.Mark().line + 1, item.Mark().column + 1}, ""};
      if (item["modality"] && item["modality"].IsScalar()) p.modality = item["modality"].Scalar();
      out.push_back(std::move(p));
      continue;
    }
    if (!item.IsScalar()) {
      diags.error("wrong-type", "a discovery pattern must be a string",
                  {file, item.Mark().line + 1, item.Mark().column + 1});
      continue;
    }
    out.push_back({item.Scalar(), {file, item.Mark().line + 1, item.Mark().column + 1}, ""});
  }
  return out;
}

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

std::unique_ptr<RE2> compile_pattern(const Pattern& p, const char* what, Diagnostics& diags) {
  RE2::Options o;
  o.set_log_errors(false);
  auto re = std::make_unique<RE2>(p.text, o);
  if (!re->ok()) {
    diags.error("bad-regex",
                std::string("invalid ") + what + " pattern '" + p.text + "': " + re->error(),
                p.loc);
    return nullptr;
  }
  return re;
}

// What the model's config.json states about its layer counts, checked against what discovery
// found: each count must be some stack's (a config counts stacks, discovery finds them).
void check_config_layers(const Inventory& inv, Diagnostics& diags) {
  for (const auto& [key, count] : inv.config_layers) {
    bool found = false;
    for (const auto& st : inv.stacks) found = found || st.num_layers == count;
    if (found) continue;
    std::string seen;
    for (const auto& st : inv.stacks)
      seen +=
          (seen.empty() ? "" : ", ") + st.container + " (" + std::to_string(st.num_layers) + ")";
    diags.warning("config-layers-mismatch",
                  "config '" + inv.config + "' says " + key + " = " + std::to_string(count) +
                      ", but discovery found " + (seen.empty() ? "no layers" : "stacks of " + seen),
                  {inv.config, 0, 0},
                  {"a checkpoint that does not match its config, or names discovery does not know: "
                   "`layerfreeze inspect` shows what was found"});
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
  for (size_t i = 0; i < inv.params.size(); ++i) {
    int32_t t = split.param_tower[i];
    if (t < 0 || in_layer(i) || reads_input[static_cast<size_t>(t)]) continue;
    for (const auto& re : emb_res)
      if (re && RE2::FullMatch(inv.params[i].name, *re)) reads_input[static_cast<size_t>(t)] = true;
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
  std::vector<Key> keys(inv.params.size());
  for (size_t i = 0; i < inv.params.size(); ++i) {
    const Param& p = inv.params[i];
    switch (p.role) {
      case Role::kTower:
        keys[i] = {p.part, p.layer >= 0 ? 1 : is_embedding(p.name) ? 0 : 2, p.layer};
        break;
      case Role::kConnector: keys[i] = {T, p.part, 0}; break;
      case Role::kEmbeddings: keys[i] = {T + 1, 0, 0}; break;
      case Role::kLayer: keys[i] = {T + 1, 1, 2 * static_cast<int64_t>(p.layer)}; break;
      case Role::kOther: keys[i] = {T + 1, 1, 2 * static_cast<int64_t>(p.anchor_layer) + 1}; break;
      case Role::kHead: keys[i] = {T + 1, 2, 0}; break;
    }
  }
  std::vector<uint32_t> order(inv.params.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const Key &x = keys[a], &y = keys[b];
    return std::tie(x.part, x.rank, x.layer) < std::tie(y.part, y.rank, y.layer);
  });
  std::vector<uint32_t> new_index(order.size());
  for (size_t k = 0; k < order.size(); ++k) new_index[order[k]] = static_cast<uint32_t>(k);
  inv.permute(order);
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

const DiscoveryPatterns& DiscoveryPatterns::shipped() {
  static const DiscoveryPatterns patterns = [] {
    Diagnostics diags;
    const char* text = embedded_rule_file("discovery.yaml");
    return parse_discovery_yaml(text ? text : "", "rules/discovery.yaml", diags);
  }();
  return patterns;
}

DiscoveryPatterns DiscoveryPatterns::merged(const DiscoveryPatterns& o, bool replace) const {
  auto join = [replace](const std::vector<Pattern>& first, const std::vector<Pattern>& second) {
    std::vector<Pattern> out = first;
    if (!replace || first.empty()) out.insert(out.end(), second.begin(), second.end());
    return out;
  };
  DiscoveryPatterns m;
  m.layers = join(o.layers, layers);
  m.embeddings = join(o.embeddings, embeddings);
  m.head = join(o.head, head);
  m.stack_order = o.stack_order.empty() ? stack_order : o.stack_order;
  m.towers = join(o.towers, towers);
  m.connectors = join(o.connectors, connectors);
  m.trunk = join(o.trunk, trunk);
  m.explicit_towers = explicit_towers || !o.towers.empty() || !o.trunk.empty();
  return m;
}

DiscoveryPatterns parse_discovery_yaml(const std::string& text, const std::string& file,
                                       Diagnostics& diags) {
  DiscoveryPatterns p;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    diags.error("yaml-syntax", e.msg, {file, e.mark.line + 1, e.mark.column + 1});
    return p;
  }
  p.layers = read_patterns(root, "layers", file, diags);
  p.embeddings = read_patterns(root, "embeddings", file, diags);
  p.head = read_patterns(root, "head", file, diags);
  p.towers = read_patterns(root, "towers", file, diags);
  p.connectors = read_patterns(root, "connectors", file, diags);
  p.trunk = read_patterns(root, "trunk", file, diags);
  if (root["stack_order"] && root["stack_order"].IsSequence())
    for (const auto& s : root["stack_order"]) p.stack_order.push_back(s.as<std::string>(""));
  return p;
}

void discover_layers(Inventory& inv, const DiscoveryPatterns& patterns, Diagnostics& diags) {
  inv.stacks.clear();
  inv.layers.clear();
  inv.notes.clear();
  inv.towers.clear();
  inv.connectors.clear();
  inv.trunk_layers = 0;
  for (auto& p : inv.params) p.part = -1;

  // 1. Layers: the outermost container key of each name that a pattern matches. Keys repeat
  // across thousands of names, so each distinct key is matched once and then known by a small
  // id; the per-name work is a scan and a hash lookup.
  std::vector<std::unique_ptr<RE2>> layer_res;
  for (const auto& p : patterns.layers) layer_res.push_back(compile_pattern(p, "layer", diags));
  struct KeyInfo {
    std::string key;
    int pattern;  // -1: no pattern matches
  };
  std::vector<KeyInfo> keys_seen;
  std::unordered_map<std::string, int32_t> key_ids;
  auto key_id = [&](const std::string& key) {
    auto it = key_ids.find(key);
    if (it != key_ids.end()) return it->second;
    int found = -1;
    for (size_t i = 0; i < layer_res.size() && found < 0; ++i)
      if (layer_res[i] && RE2::FullMatch(key, *layer_res[i])) found = static_cast<int>(i);
    int32_t id = static_cast<int32_t>(keys_seen.size());
    keys_seen.push_back({key, found});
    key_ids.emplace(key, id);
    return id;
  };
  auto match_key = [&](const std::string& key) { return keys_seen[key_id(key)].pattern; };

  struct Hit {
    int32_t key = -1;  // id in keys_seen
    int64_t index = 0;
  };
  std::vector<Hit> hits(inv.params.size());
  std::vector<Candidate> cands;
  bool any_hit = false;
  std::string buf;  // reused: no allocation per name once it has grown
  for (size_t i = 0; i < inv.params.size(); ++i) {
    const std::string& name = inv.params[i].name;
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
      if (keys_seen[id].pattern < 0) continue;
      int64_t index = 0;
      for (size_t k = d; k < end; ++k) index = index * 10 + (name[k] - '0');
      hits[i] = Hit{id, index};
      any_hit = true;
      break;
    }
  }

  // Fallback for architectures no pattern knows: the dotted container with the most indices.
  if (!any_hit) {
    std::map<std::string, std::vector<int64_t>> fallback_indices;
    for (size_t i = 0; i < inv.params.size(); ++i) {
      candidates_of(inv.params[i].name, cands);
      if (!cands.empty() && cands[0].key.find('.') != std::string::npos)
        fallback_indices[cands[0].key].push_back(cands[0].index);
    }
    std::string best;
    size_t best_n = 0;
    for (auto& [key, idx] : fallback_indices) {
      std::sort(idx.begin(), idx.end());
      size_t distinct = static_cast<size_t>(std::unique(idx.begin(), idx.end()) - idx.begin());
      if (distinct > best_n) {
        best_n = distinct;
        best = key;
      }
    }
    if (best_n >= 2) {
      int32_t id = key_id(best);
      for (size_t i = 0; i < inv.params.size(); ++i) {
        candidates_of(inv.params[i].name, cands);
        if (!cands.empty() && cands[0].key == best) hits[i] = Hit{id, cands[0].index};
      }
      inv.notes.push_back("no discovery pattern matched; the repeated container '" +
                          container_of(best) +
                          "' was found by the generic fallback (add a "
                          "`discovery: layers:` pattern to make it explicit)");
    } else {
      inv.notes.push_back(
          "no repeated blocks found: this model has no layers, so layer "
          "selectors cannot be used (add a `discovery: layers:` pattern if it "
          "has some)");
    }
  }

  // 2. Stack candidates: one per key.
  std::vector<size_t> first_seen(keys_seen.size(), SIZE_MAX);
  std::vector<std::vector<int64_t>> stack_indices(keys_seen.size());
  for (size_t i = 0; i < hits.size(); ++i) {
    if (hits[i].key < 0) continue;
    first_seen[hits[i].key] = std::min(first_seen[hits[i].key], i);
    auto& v = stack_indices[hits[i].key];
    if (v.empty() || v.back() != hits[i].index) v.push_back(hits[i].index);
  }
  std::vector<int32_t> stack_keys;
  std::vector<StackCandidate> candidates;
  for (size_t k = 0; k < keys_seen.size(); ++k) {
    if (first_seen[k] == SIZE_MAX) continue;
    auto& idx = stack_indices[k];
    std::sort(idx.begin(), idx.end());
    idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
    stack_keys.push_back(static_cast<int32_t>(k));
    candidates.push_back({container_of(keys_seen[k].key), static_cast<int32_t>(idx.size())});
  }

  // 3. Trunk, towers and connectors.
  ModalitySplit split = split_modalities(inv, candidates, patterns, diags);
  for (auto& n : split.notes) inv.notes.push_back(std::move(n));
  std::vector<int32_t> tower_of_key(keys_seen.size(), -1);
  for (size_t c = 0; c < stack_keys.size(); ++c) {
    tower_of_key[stack_keys[c]] = split.stack_tower[c];
    if (split.stack_tower[c] == ModalitySplit::kDissolved)
      for (auto& h : hits)
        if (h.key == stack_keys[c]) h.key = -1;
  }
  stack_keys.erase(
      std::remove_if(stack_keys.begin(), stack_keys.end(),
                     [&](int32_t k) { return tower_of_key[k] == ModalitySplit::kDissolved; }),
      stack_keys.end());
  inv.towers = std::move(split.towers);
  inv.connectors = std::move(split.connectors);
  std::vector<std::unique_ptr<RE2>> emb_res, head_res;
  for (const auto& p : patterns.embeddings)
    emb_res.push_back(compile_pattern(p, "embeddings", diags));
  for (const auto& p : patterns.head) head_res.push_back(compile_pattern(p, "head", diags));
  if (inv.multimodal() && !inv.registration_order)
    order_towers_by_input(inv, split, tower_of_key, emb_res,
                          [&](size_t i) { return hits[i].key >= 0; });

  // 4. Stacks in data-flow order: each tower's (input first), then the trunk's (encoder before
  // decoder). Trunk layers are numbered first, 0..L-1; a tower's layers after them.
  std::stable_sort(stack_keys.begin(), stack_keys.end(), [&](int32_t a, int32_t b) {
    auto part = [&](int32_t k) {
      return tower_of_key[k] < 0 ? static_cast<int32_t>(inv.towers.size()) : tower_of_key[k];
    };
    if (part(a) != part(b)) return part(a) < part(b);
    int ra = stack_rank(container_of(keys_seen[a].key), patterns.stack_order);
    int rb = stack_rank(container_of(keys_seen[b].key), patterns.stack_order);
    if (ra != rb) return ra < rb;
    return first_seen[a] < first_seen[b];
  });
  std::unordered_map<uint64_t, int32_t> layer_of;  // (key id, source index) -> layer
  auto layer_key = [](int32_t key, int64_t index) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(key)) << 32) ^ static_cast<uint64_t>(index);
  };
  size_t trunk_begin = 0;  // the first trunk stack in inv.stacks
  for (int32_t k : stack_keys) trunk_begin += tower_of_key[k] >= 0;
  for (int pass = 0; pass < 2; ++pass) {  // trunk layers first, then the towers'
    for (size_t s = 0; s < stack_keys.size(); ++s) {
      const int32_t k = stack_keys[s];
      if ((tower_of_key[k] >= 0) != (pass == 1)) continue;
      const auto& idx = stack_indices[k];
      Stack st;
      st.key = keys_seen[k].key;
      st.container = container_of(st.key);
      int pat = keys_seen[k].pattern;
      st.pattern = pat >= 0 ? patterns.layers[pat].text : "(generic fallback)";
      st.first_layer = static_cast<int32_t>(inv.layers.size());
      st.num_layers = static_cast<int32_t>(idx.size());
      st.tower = tower_of_key[k];
      for (int64_t source_index : idx) {
        layer_of[layer_key(k, source_index)] = static_cast<int32_t>(inv.layers.size());
        Layer l;
        l.name = layer_name(st.key, source_index);
        l.stack = static_cast<int32_t>(s);
        l.source_index = source_index;
        inv.layers.push_back(std::move(l));
      }
      if (pass == 0) inv.trunk_layers += st.num_layers;
      inv.stacks.resize(std::max(inv.stacks.size(), s + 1));
      inv.stacks[s] = std::move(st);
    }
  }
  for (size_t s = 0; s < inv.stacks.size(); ++s)
    if (inv.stacks[s].tower >= 0) {
      Tower& t = inv.towers[static_cast<size_t>(inv.stacks[s].tower)];
      t.stacks.push_back(static_cast<int32_t>(s));
      t.num_layers += inv.stacks[s].num_layers;
    }

  // 5. Roles. A connector or a tower owns what is under its root; in the trunk, layer membership
  // beats everything, then names, then position among the trunk's own parameters.
  auto trunk_param = [&](size_t i) {
    return split.param_tower.empty() || (split.param_tower[i] < 0 && split.param_connector[i] < 0);
  };
  // Under the root of a trunk stack that is not the last one (T5's `encoder.`), a parameter
  // outside the layers sits between two stacks, whatever the order of the source.
  auto under_inner_stack = [&](const std::string& name) {
    for (size_t s = trunk_begin; s + 1 < inv.stacks.size(); ++s)
      if (under(name, stack_root(inv.stacks[s].container))) return true;
    return false;
  };
  auto name_role = [&](const std::string& name) -> std::optional<Role> {
    for (const auto& re : emb_res)
      if (re && RE2::FullMatch(name, *re)) return Role::kEmbeddings;
    for (const auto& re : head_res)
      if (re && RE2::FullMatch(name, *re)) {
        // A "final norm" under a stack that is not the last one sits between two stacks
        // (T5's encoder.final_layer_norm): position, not the name, decides it.
        if (under_inner_stack(name)) return Role::kOther;
        return Role::kHead;
      }
    return std::nullopt;
  };

  size_t first_layer_pos = inv.params.size(), last_layer_pos = 0;
  std::vector<size_t> stack_first_pos(inv.stacks.size(), inv.params.size());
  for (size_t i = 0; i < hits.size(); ++i) {
    if (hits[i].key < 0 || !trunk_param(i)) continue;
    first_layer_pos = std::min(first_layer_pos, i);
    last_layer_pos = i;
    size_t st =
        static_cast<size_t>(inv.layers[layer_of.at(layer_key(hits[i].key, hits[i].index))].stack);
    stack_first_pos[st] = std::min(stack_first_pos[st], i);
  }
  // A norm directly under a trunk stack's root (`model.decoder.layer_norm`,
  // `encoder.final_layer_norm`) closes that stack: the head after the last stack, `other` between
  // two stacks — whatever the order of the source (header-only sources sort `layer_norm` before
  // `layers`).
  static const RE2 stack_norm_re(
      "(final_)?(layer_?norm|norm|ln)(_f|_out|_post|_final)?\\.(weight|bias)");
  auto stack_norm = [&](const std::string& name) -> std::optional<Role> {
    for (size_t st = trunk_begin; st < inv.stacks.size(); ++st) {
      std::string root = stack_root(inv.stacks[st].container);
      if (!under(name, root)) continue;
      if (RE2::FullMatch(re2::StringPiece(name).substr(root.size() + 1), stack_norm_re))
        return st + 1 == inv.stacks.size() ? Role::kHead : Role::kOther;
    }
    return std::nullopt;
  };
  // Under the root of a trunk stack that is not the last: the first stack's input side
  // (Whisper's `model.encoder.conv1`) is embeddings; anything else sits between stacks.
  auto inner_stack_of = [&](const std::string& name) {
    for (size_t st = trunk_begin; st + 1 < inv.stacks.size(); ++st)
      if (under(name, stack_root(inv.stacks[st].container))) return static_cast<int32_t>(st);
    return -1;
  };
  const bool trunk_has_layers = inv.trunk_layers > 0;
  int32_t running_max_layer = -1;
  for (size_t i = 0; i < inv.params.size(); ++i) {
    Param& p = inv.params[i];
    p.layer = -1;
    p.anchor_layer = -1;
    if (hits[i].key >= 0) {
      p.layer = layer_of.at(layer_key(hits[i].key, hits[i].index));
      inv.layers[p.layer].params.push_back(static_cast<uint32_t>(i));
      inv.layers[p.layer].numel += p.numel;
    }
    if (!trunk_param(i)) {
      bool connector = split.param_connector[i] >= 0;
      p.role = connector ? Role::kConnector : Role::kTower;
      p.part = connector ? split.param_connector[i] : split.param_tower[i];
    } else if (p.layer >= 0) {
      p.role = Role::kLayer;
      running_max_layer = std::max(running_max_layer, p.layer);
    } else if (auto r = name_role(p.name)) {
      p.role = *r;
    } else if (auto n = stack_norm(p.name)) {
      p.role = *n;
    } else if (int32_t st = inner_stack_of(p.name); st >= 0) {
      p.role = static_cast<size_t>(st) == trunk_begin && i < stack_first_pos[trunk_begin]
                   ? Role::kEmbeddings
                   : Role::kOther;
    } else if (!trunk_has_layers) {
      p.role = Role::kOther;
    } else if (i < first_layer_pos) {
      p.role = Role::kEmbeddings;
    } else if (i > last_layer_pos) {
      p.role = Role::kHead;
    } else {
      p.role = Role::kOther;
    }
    if (p.role == Role::kOther && trunk_has_layers) {
      // It opens with the last layer of the stack it sits under, else the layer before it.
      p.anchor_layer = running_max_layer;
      for (size_t s = trunk_begin; s < inv.stacks.size(); ++s) {
        const Stack& st = inv.stacks[s];
        if (under(p.name, stack_root(st.container)))
          p.anchor_layer = st.first_layer + st.num_layers - 1;
      }
    }
    p.alias_roles.clear();
    for (const auto& a : p.aliases) {
      std::vector<Candidate> ac;
      candidates_of(a, ac);
      bool in_layer = false;
      for (const auto& c : ac)
        if (match_key(c.key) >= 0) in_layer = true;
      if (p.role == Role::kTower || p.role == Role::kConnector) {
        p.alias_roles.push_back(p.role);
      } else if (in_layer) {
        p.alias_roles.push_back(Role::kLayer);
      } else {
        p.alias_roles.push_back(name_role(a).value_or(p.role));
      }
    }
  }
  if (inv.multimodal()) {
    if (!inv.registration_order)
      order_by_data_flow(inv, [&](const std::string& name) {
        for (const auto& re : emb_res)
          if (re && RE2::FullMatch(name, *re)) return true;
        return false;
      });
    inv.notes.push_back(describe_parts(inv));
  }
  check_config_layers(inv, diags);
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
