#include "core/discovery_patterns.hpp"
#include "core/regex.hpp"

#include <re2/re2.h>

#include <yaml-cpp/yaml.h>
#include <memory>

#include "core/embedded_rules.hpp"
#include "core/yaml_reader.hpp"

namespace layerfreeze {

namespace {

// One pattern of a list: a string, or for towers `{pattern: P, modality: M}`.
void read_pattern(YamlReader& r, const std::string& key, const YAML::Node& item,
                  DiscoveryPatterns& out) {
  std::string modality;
  YAML::Node pattern_node = item;
  if (key == "towers" && item.IsMap()) {
    bool has_pattern = false;
    for (const auto& t : r.entries(item, "a tower pattern", {"pattern", "modality"})) {
      if (t.key == "pattern") {
        pattern_node = t.value;
        has_pattern = true;
      } else if (auto m = r.string(t.value, "'modality'")) {
        modality = *m;
      }
    }
    if (!has_pattern) {
      r.error("missing-key", "a tower pattern map needs 'pattern'", item);
      return;
    }
  }
  auto s = r.string(pattern_node, "a pattern");
  if (!s) return;
  if (key == "stack_order") {
    out.stack_order.push_back(*s);
    return;
  }
  RE2::Options o = re2_options();
  RE2 re(*s, o);
  if (!re.ok())
    r.error("bad-regex", "invalid " + key + " pattern '" + *s + "': " + re.error(), pattern_node);
  if ((key == "layers" || key == "experts") && s->find('#') == std::string::npos)
    r.error("bad-value",
            "a" + std::string(key == "layers" ? " layers" : "n experts") +
                " pattern matches a container key with '#' where the index is (e.g. " +
                (key == "layers" ? "'backbone\\.stages\\.#'" : "'(.+\\.)?experts\\.#'") + ")",
            item);
  Pattern p{*s, r.loc(pattern_node), modality};
  (key == "layers"           ? out.layers
   : key == "embeddings"     ? out.embeddings
   : key == "head"           ? out.head
   : key == "towers"         ? out.towers
   : key == "connectors"     ? out.connectors
   : key == "experts"        ? out.experts
   : key == "fused_experts"  ? out.fused_experts
   : key == "shared_experts" ? out.shared_experts
   : key == "routers"        ? out.routers
   : key == "mtp"            ? out.mtp
                             : out.trunk)
      .push_back(std::move(p));
}

struct Shipped {
  DiscoveryPatterns patterns;
  Diagnostics diags;
};

const Shipped& shipped_file() {
  static const Shipped s = [] {
    Shipped out;
    const char* text = embedded_rule_file("discovery.yaml");
    out.patterns = parse_discovery_yaml(text ? text : "", "rules/discovery.yaml", out.diags);
    return out;
  }();
  return s;
}

}  // namespace

std::unique_ptr<RE2> compile_pattern(const Pattern& p, const char* what, Diagnostics& diags) {
  RE2::Options o = re2_options();
  auto re = std::make_unique<RE2>(p.text, o);
  if (!re->ok()) {
    diags.error("bad-regex",
                std::string("invalid ") + what + " pattern '" + p.text + "': " + re->error(),
                p.loc);
    return nullptr;
  }
  return re;
}

void read_discovery_block(YamlReader& r, const YAML::Node& block, DiscoveryPatterns& out,
                          bool* replace) {
  std::vector<std::string> keys = {"layers",        "embeddings",     "head",    "stack_order",
                                   "towers",        "connectors",     "trunk",   "experts",
                                   "fused_experts", "shared_experts", "routers", "mtp"};
  if (replace) keys.push_back("replace");
  for (const auto& e : r.entries(block, "'discovery'", keys)) {
    if (e.key == "replace") {
      auto v = r.value(e.value, "'replace'");
      if (!v || v->kind != Value::Kind::kBool)
        r.error("wrong-type", "'replace' must be true or false", e.value);
      else
        *replace = v->b;
      continue;
    }
    if (!e.value.IsSequence()) {
      r.error("wrong-type", "'" + e.key + "' must be a list", e.value);
      continue;
    }
    for (const auto& item : e.value) read_pattern(r, e.key, item, out);
  }
}

DiscoveryPatterns parse_discovery_yaml(const std::string& text, const std::string& file,
                                       Diagnostics& diags) {
  DiscoveryPatterns p;
  auto root = load_yaml(text, file, "discovery patterns", 64, diags);
  if (!root) return p;
  YamlReader r(file, diags);
  read_discovery_block(r, *root, p, nullptr);
  return p;
}

namespace {

// Every pattern list of a DiscoveryPatterns with its key, in the order of rules/discovery.yaml.
template <class P, class F>
void each_list(P& p, F f) {
  f("layers", p.layers);
  f("embeddings", p.embeddings);
  f("head", p.head);
  f("towers", p.towers);
  f("connectors", p.connectors);
  f("trunk", p.trunk);
  f("mtp", p.mtp);
  f("experts", p.experts);
  f("fused_experts", p.fused_experts);
  f("shared_experts", p.shared_experts);
  f("routers", p.routers);
}

}  // namespace

std::vector<StructureHint> structure_hints(const DiscoveryPatterns& p) {
  std::vector<StructureHint> out;
  each_list(p, [&](const char* kind, const std::vector<Pattern>& list) {
    for (const auto& x : list) out.push_back({kind, x.text, x.modality});
  });
  for (const auto& w : p.stack_order) out.push_back({"stack_order", w, ""});
  return out;
}

bool is_discovery_kind(const std::string& kind) {
  bool found = kind == "stack_order";
  DiscoveryPatterns none;
  each_list(none, [&](const char* k, const std::vector<Pattern>&) { found = found || kind == k; });
  return found;
}

DiscoveryPatterns patterns_from_hints(const std::vector<StructureHint>& hints,
                                      const std::string& file) {
  DiscoveryPatterns out;
  for (const auto& h : hints) {
    if (h.kind == "stack_order") {
      out.stack_order.push_back(h.pattern);
      continue;
    }
    each_list(out, [&](const char* kind, std::vector<Pattern>& list) {
      if (h.kind != kind) return;
      Pattern p;  // member by member: GCC 12 takes the braced form for maybe-uninitialized
      p.text = h.pattern;
      p.loc.file = file;
      p.modality = h.modality;
      list.push_back(std::move(p));
    });
  }
  out.explicit_towers = !out.towers.empty() || !out.trunk.empty();
  return out;
}

const DiscoveryPatterns& DiscoveryPatterns::shipped() { return shipped_file().patterns; }
const Diagnostics& DiscoveryPatterns::shipped_diagnostics() { return shipped_file().diags; }

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
  m.mtp = join(o.mtp, mtp);
  m.experts = join(o.experts, experts);
  m.fused_experts = join(o.fused_experts, fused_experts);
  m.shared_experts = join(o.shared_experts, shared_experts);
  m.routers = join(o.routers, routers);
  m.explicit_towers = explicit_towers || !o.towers.empty() || !o.trunk.empty();
  return m;
}

}  // namespace layerfreeze
