#include "core/towers.hpp"
#include "core/regex.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <unordered_map>

namespace layerfreeze {

bool at_or_under(const std::string& name, const std::string& root) {
  return !root.empty() && name.size() >= root.size() && name.compare(0, root.size(), root) == 0 &&
         (name.size() == root.size() || name[root.size()] == '.');
}

namespace {

struct Compiled {
  std::vector<std::unique_ptr<RE2>> res;
  const std::vector<Pattern>* patterns = nullptr;

  void compile(const std::vector<Pattern>& ps, const char* what, Diagnostics& diags) {
    patterns = &ps;
    for (const auto& p : ps) res.push_back(compile_pattern(p, what, diags));
  }
  int match(const std::string& path) const {
    for (size_t i = 0; i < res.size(); ++i)
      if (res[i] && RE2::FullMatch(path, *res[i])) return static_cast<int>(i);
    return -1;
  }
};

bool all_digits(const std::string& s, size_t b, size_t e) {
  if (b >= e) return false;
  for (size_t k = b; k < e; ++k)
    if (!std::isdigit(static_cast<unsigned char>(s[k]))) return false;
  return true;
}

// What the module paths of a name match: the shortest prefix (at a component boundary, the whole
// name included) that a tower pattern matches, and the same for connectors. Only the prefixes
// above the first index component are looked at: a tower or connector is never inside a
// repeated block, and the distinct prefixes stay few even for a million tensors.
struct PathMatch {
  int tower_pattern = -1, connector_pattern = -1;
  uint32_t tower_len = 0, connector_len = 0;
};

class PrefixMatcher {
 public:
  PrefixMatcher(const Compiled& towers, const Compiled& connectors)
      : towers_(towers), connectors_(connectors) {}

  // One hash lookup a name: the part above its first index component ("model.layers" of
  // "model.layers.7.mlp.w") is shared by thousands of names and matched once.
  PathMatch match(const std::string& name) {
    buf_.assign(name, 0, above_first_index(name));
    auto it = cache_.find(buf_);
    if (it == cache_.end()) it = cache_.emplace(buf_, match_path(buf_)).first;
    return it->second;
  }

 private:
  // Every prefix of `path` at a component boundary, the whole path included, shortest first.
  PathMatch match_path(const std::string& path) const {
    PathMatch m;
    for (size_t end = path.find('.');; end = path.find('.', end + 1)) {
      std::string prefix = path.substr(0, end);
      if (prefix.empty()) break;
      if (m.tower_pattern < 0 && (m.tower_pattern = towers_.match(prefix)) >= 0)
        m.tower_len = static_cast<uint32_t>(prefix.size());
      if (m.connector_pattern < 0 && (m.connector_pattern = connectors_.match(prefix)) >= 0)
        m.connector_len = static_cast<uint32_t>(prefix.size());
      if (end == std::string::npos) break;
    }
    return m;
  }

  const Compiled& towers_;
  const Compiled& connectors_;
  std::unordered_map<std::string, PathMatch> cache_;
  std::string buf_;
};

// The shortest prefix of `container` (at a component boundary) that holds none of `keep`: the
// root of a tower whose stack is `container`, beside a trunk made of the `keep` stacks.
std::string root_apart_from(const std::string& container, const std::vector<std::string>& keep) {
  for (size_t end = container.find('.');; end = container.find('.', end + 1)) {
    std::string prefix = container.substr(0, end);
    bool holds = false;
    for (const auto& k : keep) holds = holds || at_or_under(k, prefix);
    if (!holds) return prefix;
    if (end == std::string::npos) return container;
  }
}

// The child of `root` that `container` is under when that child is an index
// ("model.vision_tower.vision_towers.1" for root "model.vision_tower"): `root`, the components
// after it up to and including the first all-digit one. Empty when none is.
std::string indexed_child(const std::string& container, const std::string& root) {
  if (!at_or_under(container, root) || container.size() == root.size()) return "";
  for (size_t start = root.size() + 1; start < container.size();) {
    size_t end = container.find('.', start);
    if (end == std::string::npos) end = container.size();
    if (all_digits(container, start, end)) return container.substr(0, end);
    start = end + 1;
  }
  return "";
}

// A connector found by its position, not by a pattern.
constexpr int kByPosition = 1 << 30;

// The components of a dotted path.
std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('.', start);
    if (end == std::string::npos) end = path.size();
    out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// True when `container` is one half of an encoder–decoder pair among `stacks[trunk]`: another
// stack's path is the same with `encoder` and `decoder` swapped (`model.encoder.layers` beside
// `model.decoder.layers`, T5's `encoder.block` beside `decoder.block`).
bool paired_with(const std::string& container, const std::vector<StackCandidate>& stacks,
                 const std::vector<size_t>& trunk) {
  const auto mine = components(container);
  for (size_t s : trunk) {
    const auto other = components(stacks[s].container);
    if (other.size() != mine.size()) continue;
    size_t swapped = 0, differ = 0;
    for (size_t k = 0; k < mine.size(); ++k) {
      if (mine[k] == other[k]) continue;
      ++differ;
      auto swap = [](std::string c) {
        for (auto [a, b] : {std::pair<const char*, const char*>{"encoder", "decoder"},
                            std::pair<const char*, const char*>{"decoder", "encoder"}})
          if (auto at = c.find(a); at != std::string::npos) return c.replace(at, 7, b);
        return c;
      };
      swapped += swap(mine[k]) == other[k];
    }
    if (differ == 1 && swapped == 1) return true;
  }
  return false;
}

std::string modality_of(const std::string& root, const std::string& declared,
                        const Inventory& inv) {
  if (!declared.empty()) return declared;
  for (const char* w : {"audio", "speech", "whisper", "apm"})
    if (root.find(w) != std::string::npos) return "audio";
  if (inv.facts().config_modalities.size() == 1) return inv.facts().config_modalities[0];
  return "vision";
}

}  // namespace

size_t above_first_index(const std::string& name) {
  for (size_t start = 0; start <= name.size();) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) end = name.size();
    if (all_digits(name, start, end)) return start == 0 ? 0 : start - 1;
    start = end + 1;
  }
  return name.size();
}

bool is_modality_count(const std::string& key) {
  return key.rfind("vision_config.", 0) == 0 || key.rfind("audio_config.", 0) == 0;
}

bool config_counts_decoder(const Inventory& inv) {
  for (const auto& kv : inv.facts().config_layers)
    if (kv.first.find("decoder") != std::string::npos) return true;
  return false;
}

const std::pair<std::string, int64_t>* text_layer_count(const Inventory& inv) {
  for (const auto& kv : inv.facts().config_layers)
    if (!is_modality_count(kv.first)) return &kv;
  return nullptr;
}

ModalitySplit split_modalities(const Inventory& inv, const std::vector<StackCandidate>& stacks,
                               const DiscoveryPatterns& patterns, Diagnostics& diags) {
  ModalitySplit out;
  out.stack_tower.assign(stacks.size(), -1);
  if (patterns.towers.empty() && patterns.connectors.empty() && patterns.trunk.empty()) return out;
  Compiled towers, connectors, trunk;
  towers.compile(patterns.towers, "tower", diags);
  connectors.compile(patterns.connectors, "connector", diags);
  trunk.compile(patterns.trunk, "trunk", diags);

  // 1. What every name's module paths match.
  PrefixMatcher matcher(towers, connectors);
  const size_t n = inv.params().size();
  std::vector<PathMatch> matches(n);
  std::vector<std::string> tower_roots, connector_roots;  // distinct, in parameter order
  std::map<std::string, int> tower_pattern_of, connector_pattern_of;
  for (size_t i = 0; i < n; ++i) {
    matches[i] = matcher.match(inv.params()[i].name);
    const PathMatch& m = matches[i];
    if (m.connector_pattern >= 0) {
      std::string root = inv.params()[i].name.substr(0, m.connector_len);
      if (connector_pattern_of.emplace(root, m.connector_pattern).second)
        connector_roots.push_back(root);
    } else if (m.tower_pattern >= 0) {
      std::string root = inv.params()[i].name.substr(0, m.tower_len);
      if (tower_pattern_of.emplace(root, m.tower_pattern).second) tower_roots.push_back(root);
    }
  }
  // A stack inside a connector is the connector's; a stack inside a tower root is the tower's.
  std::vector<int32_t> stack_root(stacks.size(), -1);  // index in tower_roots
  for (size_t s = 0; s < stacks.size(); ++s) {
    for (const auto& c : connector_roots)
      if (at_or_under(stacks[s].container, c)) out.stack_tower[s] = ModalitySplit::kDissolved;
    for (size_t t = 0; t < tower_roots.size() && out.stack_tower[s] == -1; ++t)
      if (at_or_under(stacks[s].container, tower_roots[t])) stack_root[s] = static_cast<int32_t>(t);
  }

  // 2. The towers: by name, by the rules file's trunk, by the config.
  struct Found {
    std::string root, modality, found_by;
  };
  std::vector<Found> found;
  for (const auto& root : tower_roots) {
    const Pattern& p = patterns.towers[static_cast<size_t>(tower_pattern_of[root])];
    found.push_back({root, modality_of(root, p.modality, inv), "its name"});
  }
  auto trunk_stacks = [&] {
    std::vector<size_t> t;
    for (size_t s = 0; s < stacks.size(); ++s)
      if (out.stack_tower[s] == -1 && stack_root[s] < 0) t.push_back(s);
    return t;
  };
  auto promote = [&](const std::vector<size_t>& keep, size_t s, const std::string& why) {
    std::vector<std::string> kept;
    for (size_t k : keep) kept.push_back(stacks[k].container);
    std::string root = root_apart_from(stacks[s].container, kept);
    for (size_t t = 0; t < found.size(); ++t)
      if (found[t].root == root) {
        stack_root[s] = static_cast<int32_t>(t);
        return;
      }
    stack_root[s] = static_cast<int32_t>(found.size());
    found.push_back({root, modality_of(root, "", inv), why});
  };
  if (!patterns.trunk.empty()) {
    std::vector<size_t> keep, others;
    for (size_t s : trunk_stacks()) {
      bool is_trunk = false;
      const std::string& c = stacks[s].container;
      for (size_t end = c.find('.');; end = c.find('.', end + 1)) {
        is_trunk = is_trunk || trunk.match(c.substr(0, end)) >= 0;
        if (end == std::string::npos) break;
      }
      (is_trunk ? keep : others).push_back(s);
    }
    if (keep.empty() && !others.empty()) {
      // A trunk pattern that names no stack is a mistake of the family or rules file that wrote
      // it (a typo, another checkpoint layout): said, not ignored.
      std::string texts, found_stacks;
      for (const auto& p : patterns.trunk) texts += (texts.empty() ? "'" : ", '") + p.text + "'";
      for (size_t s : others)
        found_stacks += (found_stacks.empty() ? "" : ", ") + stacks[s].container;
      diags.warning("trunk-unmatched",
                    "the trunk patterns " + texts + " match none of the stacks found (" +
                        found_stacks + "): discovery decides the trunk without them",
                    patterns.trunk.front().loc,
                    {"a trunk pattern is an RE2 full match on a stack's container or a prefix "
                     "of it, at a dot (`model\\.layers`)"});
    }
    if (!keep.empty())
      for (size_t s : others)
        promote(keep, s,
                (patterns.trunk.front().loc.file.rfind("rules/families/", 0) == 0
                     ? "the family's structure, " + patterns.trunk.front().loc.file
                     : std::string("the rules file's trunk patterns")) +
                    " (" + stacks[s].container + " is not the trunk)");
  }
  // The config as an oracle: when it states the language model's layer count and the trunk's
  // stacks add up to another, the one stack with that count is the trunk and the others feed it
  // (llama3v's `vison.encoder.layers` beside `llm.model.layers`). An encoder–decoder config
  // counts its two stacks apart, and an encoder beside its decoder is never a tower.
  bool by_config = false;
  const auto* count = text_layer_count(inv);
  if (auto t = trunk_stacks(); count && t.size() > 1 && !config_counts_decoder(inv)) {
    int64_t total = 0;
    for (size_t s : t) total += stacks[s].num_layers;
    std::vector<size_t> keep, others;
    for (size_t s : t) (stacks[s].num_layers == count->second ? keep : others).push_back(s);
    // A dual encoder (CLIP) states every stack's count in its own config section and needs no
    // connector: each stack is part of its trunk.
    bool stated = true;
    for (size_t s : others) {
      bool found_count = false;
      for (const auto& kv : inv.facts().config_layers)
        found_count = found_count || (&kv != count && kv.second == stacks[s].num_layers);
      stated = stated && found_count;
    }
    const bool named = !connector_roots.empty() || patterns.explicit_towers;
    if (total != count->second && keep.size() == 1 && (!stated || named)) {
      for (size_t s : others) {
        if (paired_with(stacks[s].container, stacks, t)) continue;
        promote(keep, s,
                "the config: " + count->first + " = " + std::to_string(count->second) + " is " +
                    stacks[keep[0]].container + "'s count" +
                    (inv.facts().config_modalities.empty()
                         ? std::string()
                         : "; the config has a " + inv.facts().config_modalities[0] + " part"));
        by_config = true;
      }
    }
  }

  // 2b. Towers side by side: one root whose stacks sit under different indexed children
  // (Logics' `vision_towers.0` ConvNeXt and `vision_towers.1` SigLIP) is that many towers, one
  // per child, when every parameter under the root is under one of them.
  for (size_t t = 0; t < found.size(); ++t) {
    std::vector<std::string> branches;
    bool parallel = true;
    for (size_t s = 0; s < stacks.size() && parallel; ++s) {
      if (stack_root[s] != static_cast<int32_t>(t)) continue;
      std::string b = indexed_child(stacks[s].container, found[t].root);
      if (b.empty()) parallel = false;
      if (std::find(branches.begin(), branches.end(), b) == branches.end()) branches.push_back(b);
    }
    if (!parallel || branches.size() < 2) continue;
    for (size_t i = 0; i < n && parallel; ++i) {
      const std::string& name = inv.params()[i].name;
      if (!at_or_under(name, found[t].root) || matches[i].connector_pattern >= 0) continue;
      bool in_one = false;
      for (const auto& b : branches) in_one = in_one || at_or_under(name, b);
      parallel = in_one;
    }
    if (!parallel) continue;
    std::sort(branches.begin(), branches.end(), [](const std::string& a, const std::string& b) {
      return std::make_pair(a.size(), a) < std::make_pair(b.size(), b);
    });
    const Found outer = found[t];
    std::vector<int32_t> branch_tower;
    for (size_t k = 0; k < branches.size(); ++k) {
      Found f{branches[k], outer.modality,
              outer.found_by + "; one of " + std::to_string(branches.size()) +
                  " towers side by side under '" + outer.root + "'"};
      if (k == 0) {
        found[t] = f;
        branch_tower.push_back(static_cast<int32_t>(t));
      } else {
        branch_tower.push_back(static_cast<int32_t>(found.size()));
        found.push_back(f);
      }
    }
    for (size_t s = 0; s < stacks.size(); ++s) {
      if (stack_root[s] != static_cast<int32_t>(t)) continue;
      for (size_t k = 0; k < branches.size(); ++k)
        if (at_or_under(stacks[s].container, branches[k])) stack_root[s] = branch_tower[k];
    }
  }

  // 2c. A connector no name tells: when there are towers and the language model has a module of
  // its own (llama3v's `llm`), what lies outside it, outside every tower and every named
  // connector, and is neither embeddings nor head by name, is between them in the data flow
  // (llama3v's `projection`; a second encoder's own projector beside a named one).
  if (!found.empty()) {
    Compiled emb, head;
    emb.compile(patterns.embeddings, "embeddings", diags);
    head.compile(patterns.head, "head", diags);
    std::vector<std::string> keep;
    for (const auto& f : found) keep.push_back(f.root);
    auto t = trunk_stacks();
    const std::string lm = t.empty() ? "" : root_apart_from(stacks[t[0]].container, keep);
    keep.push_back(lm);
    if (!lm.empty() && lm != stacks[t[0]].container)
      for (size_t i = 0; i < n; ++i) {
        const std::string& name = inv.params()[i].name;
        bool placed = matches[i].connector_pattern >= 0;
        for (const auto& k : keep) placed = placed || at_or_under(name, k);
        if (placed || emb.match(name) >= 0 || head.match(name) >= 0) continue;
        std::string root = root_apart_from(name, keep);
        if (connector_pattern_of.emplace(root, kByPosition).second) connector_roots.push_back(root);
        matches[i].connector_pattern = kByPosition;
        matches[i].connector_len = static_cast<uint32_t>(root.size());
      }
  }

  // 3. Towers only where a connector feeds them into a trunk that remains (or the config says
  // which stack the trunk is).
  const bool fed = !connector_roots.empty() || patterns.explicit_towers || by_config;
  if (found.empty()) return out;
  if (!fed || trunk_stacks().empty()) {
    std::string roots;
    for (const auto& f : found) roots += (roots.empty() ? "'" : ", '") + f.root + "'";
    out.notes.push_back(
        roots + (found.size() == 1 ? " looks" : " look") + " like a tower's name, but " +
        (!fed ? "no connector (projector, merger, resampler) feeds it into a trunk"
              : "no other stack would be left as the trunk") +
        ": its layers stay in the trunk (add `discovery: towers:` or `trunk:` to say otherwise)");
    std::fill(out.stack_tower.begin(), out.stack_tower.end(), -1);
    return out;
  }
  for (size_t t = 0; t < found.size(); ++t) {
    Tower tw;
    tw.root = found[t].root;
    tw.modality = found[t].modality;
    tw.found_by = found[t].found_by;
    out.towers.push_back(std::move(tw));
  }
  for (size_t s = 0; s < stacks.size(); ++s)
    if (out.stack_tower[s] == -1 && stack_root[s] >= 0) out.stack_tower[s] = stack_root[s];
  std::map<std::string, int32_t> connector_index;
  for (const auto& root : connector_roots) {
    connector_index[root] = static_cast<int32_t>(out.connectors.size());
    const int pattern = connector_pattern_of[root];
    out.connectors.push_back(
        {root, pattern == kByPosition
                   ? std::string("(its position: between the towers and the language model)")
                   : patterns.connectors[static_cast<size_t>(pattern)].text});
  }

  // 4. Every parameter's part: a connector first (Qwen2-VL's `visual.merger` is inside the
  // tower's root), then the innermost tower root it is under.
  out.param_tower.assign(n, -1);
  out.param_connector.assign(n, -1);
  for (size_t i = 0; i < n; ++i) {
    const std::string& name = inv.params()[i].name;
    if (matches[i].connector_pattern >= 0) {
      out.param_connector[i] = connector_index.at(name.substr(0, matches[i].connector_len));
      continue;
    }
    size_t best = 0;
    for (size_t t = 0; t < out.towers.size(); ++t)
      if (at_or_under(name, out.towers[t].root) && out.towers[t].root.size() > best) {
        best = out.towers[t].root.size();
        out.param_tower[i] = static_cast<int32_t>(t);
      }
  }
  // Towers in the order of their first parameter.
  std::vector<size_t> first(out.towers.size(), n);
  for (size_t i = n; i-- > 0;)
    if (out.param_tower[i] >= 0) first[static_cast<size_t>(out.param_tower[i])] = i;
  std::vector<int32_t> order(out.towers.size());
  for (size_t t = 0; t < order.size(); ++t) order[t] = static_cast<int32_t>(t);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return first[a] < first[b]; });
  std::vector<int32_t> rank(order.size());
  std::vector<Tower> sorted;
  for (size_t k = 0; k < order.size(); ++k) {
    rank[static_cast<size_t>(order[k])] = static_cast<int32_t>(k);
    sorted.push_back(out.towers[static_cast<size_t>(order[k])]);
  }
  out.towers = std::move(sorted);
  for (auto& t : out.param_tower)
    if (t >= 0) t = rank[static_cast<size_t>(t)];
  for (auto& t : out.stack_tower)
    if (t >= 0) t = rank[static_cast<size_t>(t)];
  return out;
}

}  // namespace layerfreeze
