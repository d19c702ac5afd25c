#include "core/compiler.hpp"

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "core/layer_discovery.hpp"
#include "core/rules_parser.hpp"

namespace layerfreeze {

namespace {

// Resolves selectors against one inventory with one set of parameter values.
class Resolver {
 public:
  Resolver(const Inventory& inv, const Scope& scope, Diagnostics& diags)
      : inv_(inv), scope_(scope), diags_(diags), n_(inv.params.size()) {
    for (int r = 0; r < kNumRoles; ++r) roles_[r] = Bitset(n_);
    for (size_t i = 0; i < n_; ++i) {
      const Param& p = inv.params[i];
      roles_[static_cast<int>(p.role)].set(i);
      for (Role ar : p.alias_roles) roles_[static_cast<int>(ar)].set(i);
    }
  }

  // Pass 1: evaluate regex patterns of every selector and register them.
  void collect(const Selector& s) {
    if (s.kind == Selector::Kind::kRegex) {
      auto list = eval_strings(s.strings);
      bool cs = eval_bool(s.case_sensitive, true);
      std::vector<int> ids;
      for (const auto& text : list) {
        auto key = std::make_pair(text, cs);
        auto it = pattern_ids_.find(key);
        if (it == pattern_ids_.end()) {
          RE2::Options o;
          o.set_log_errors(false);
          o.set_case_sensitive(cs);
          RE2 probe(text, o);
          if (!probe.ok()) {
            diags_.error("bad-regex", "invalid regex '" + text + "': " + probe.error(),
                         s.strings.loc());
            continue;
          }
          it = pattern_ids_.emplace(key, static_cast<int>(patterns_.size())).first;
          patterns_.push_back(key);
        }
        ids.push_back(it->second);
      }
      regex_of_[&s] = ids;
    }
    for (const auto& c : s.children) collect(c);
    for (const auto& c : s.except) collect(c);
  }

  // One RE2::Set per case mode, one pass over every name.
  void match_all() {
    pattern_sets_.assign(patterns_.size(), Bitset(n_));
    for (int mode = 0; mode < 2; ++mode) {
      bool cs = mode == 0;
      RE2::Options o;
      o.set_log_errors(false);
      o.set_case_sensitive(cs);
      o.set_max_mem(64 << 20);
      RE2::Set set(o, RE2::ANCHOR_BOTH);
      std::vector<int> set_to_pattern;
      for (size_t i = 0; i < patterns_.size(); ++i) {
        if (patterns_[i].second != cs) continue;
        std::string err;
        if (set.Add(patterns_[i].first, &err) < 0) continue;  // reported in collect()
        set_to_pattern.push_back(static_cast<int>(i));
      }
      if (set_to_pattern.empty()) continue;
      if (!set.Compile()) {
        diags_.error("regex-too-large", "the regexes of this strategy exceed RE2's memory budget",
                     {});
        return;
      }
      // RE2 costs ~0.3 µs a call here whatever the pattern, so large inventories are split in
      // two halves on two threads; the halves meet at a multiple of 64, so no two threads write
      // the same bitset word.
      std::atomic<bool> out_of_memory{false};
      auto run_range = [&](size_t begin, size_t end) {
        std::vector<int> hits;
        RE2::Set::ErrorInfo info;
        for (size_t i = begin; i < end; ++i) {
          const Param& p = inv_.params[i];
          auto run = [&](const std::string& name) {
            hits.clear();
            if (set.Match(name, &hits, &info)) {
              for (int h : hits) pattern_sets_[set_to_pattern[h]].set(i);
            } else if (info.kind == RE2::Set::kOutOfMemory) {
              out_of_memory = true;
            }
          };
          run(p.name);
          for (const auto& a : p.aliases) run(a);
        }
      };
      size_t mid = n_ >= 20000 ? (n_ / 2) & ~size_t{63} : n_;
      if (mid < n_) {
        std::thread second(run_range, mid, n_);
        run_range(0, mid);
        second.join();
      } else {
        run_range(0, n_);
      }
      if (out_of_memory) {
        diags_.error("regex-too-large",
                     "the regexes of this strategy exceed RE2's memory budget while matching", {});
        return;
      }
    }
  }

  DynamicSet resolve(const Selector& s) {
    DynamicSet d = resolve_uncached(s);
    if (d.is_static()) cache_[&s] = d.leaf;
    return d;
  }

  // Whether `s` selects parameter `i` under its name number `k` (0: canonical, then aliases).
  // Tied tensors are few; this runs for them only.
  bool matches_name(const Selector& s, size_t i, size_t k) {
    const Param& p = inv_.params[i];
    const std::string& name = k == 0 ? p.name : p.aliases[k - 1];
    bool hit = false;
    switch (s.kind) {
      case Selector::Kind::kRole: {
        Role r = k == 0 ? p.role : p.alias_roles[k - 1];
        hit = r == s.role;
        break;
      }
      case Selector::Kind::kRegex: {
        bool cs = eval_bool(s.case_sensitive, true);
        for (const auto& text : eval_strings(s.strings)) {
          RE2::Options o;
          o.set_log_errors(false);
          o.set_case_sensitive(cs);
          RE2 re(text, o);
          hit = hit || (re.ok() && RE2::FullMatch(name, re));
        }
        break;
      }
      case Selector::Kind::kLeaf: {
        auto d = name.rfind('.');
        std::string leaf = d == std::string::npos ? name : name.substr(d + 1);
        for (const auto& w : eval_strings(s.strings)) hit = hit || w == leaf;
        break;
      }
      case Selector::Kind::kAnyOf:
        for (const auto& c : s.children) hit = hit || matches_name(c, i, k);
        break;
      case Selector::Kind::kAllOf:
        hit = true;
        for (const auto& c : s.children) hit = hit && matches_name(c, i, k);
        break;
      default: {
        auto it = cache_.find(&s);
        hit = it != cache_.end() && it->second.test(i);
        break;
      }
    }
    if (hit && !s.except.empty()) hit = !matches_name(s.except[0], i, k);
    return hit;
  }

  DynamicSet resolve_uncached(const Selector& s) {
    DynamicSet d = resolve_kind(s);
    if (!s.except.empty()) {
      DynamicSet ex = resolve(s.except[0]);
      if (d.is_static() && ex.is_static()) {
        d.leaf.subtract(ex.leaf);
      } else {
        DynamicSet m;
        m.op = DynamicSet::Op::kMinus;
        m.kids = {std::move(d), std::move(ex)};
        d = std::move(m);
      }
    }
    return d;
  }

  std::optional<int64_t> eval_int(const Expr& e, const std::string& what) {
    if (e.empty()) return std::nullopt;
    auto v = e.eval(scope_, diags_);
    if (!v) return std::nullopt;
    if (v->kind != Value::Kind::kInt) {
      diags_.error("wrong-type", what + " must be an int, got " + v->to_string(), e.loc());
      return std::nullopt;
    }
    return v->i;
  }
  std::optional<double> eval_number(const Expr& e, const std::string& what) {
    if (e.empty()) return std::nullopt;
    auto v = e.eval(scope_, diags_);
    if (!v) return std::nullopt;
    if (!v->is_number()) {
      diags_.error("wrong-type", what + " must be a number, got " + v->to_string(), e.loc());
      return std::nullopt;
    }
    return v->number();
  }
  bool eval_bool(const Expr& e, bool fallback) {
    if (e.empty()) return fallback;
    auto v = e.eval(scope_, diags_);
    if (!v) return fallback;
    if (v->kind != Value::Kind::kBool) {
      diags_.error("wrong-type", "expected true or false, got " + v->to_string(), e.loc());
      return fallback;
    }
    return v->b;
  }
  std::vector<std::string> eval_strings(const Expr& e) {
    std::vector<std::string> out;
    auto v = e.eval(scope_, diags_);
    if (!v) return out;
    if (v->kind == Value::Kind::kString) return {v->s};
    if (v->kind == Value::Kind::kList) {
      for (const auto& item : v->list)
        out.push_back(item.kind == Value::Kind::kString ? item.s : item.to_string());
      return out;
    }
    diags_.error("wrong-type", "expected a string or a list of strings, got " + v->to_string(),
                 e.loc());
    return out;
  }

  const Bitset& role_set(Role r) const { return roles_[static_cast<int>(r)]; }

 private:
  std::string layer_count_text() const { return inv_.source + " has " + describe_layers(inv_); }

  DynamicSet leaf(Bitset b) {
    DynamicSet d;
    d.leaf = std::move(b);
    return d;
  }

  // The layers [begin, end) of the whole model, or of one stack.
  struct Range {
    int32_t begin = 0, end = 0;
    std::string what;
  };

  // Without a stack: the trunk's layers. A stack is named by its container, a component of it,
  // or (a multimodal model's tower) the tower's modality or a component of its root: then every
  // layer of the towers it names.
  std::optional<Range> stack_range(const Expr& stack_expr) {
    Range r{0, inv_.num_layers(), "the model"};
    if (stack_expr.empty()) return r;
    auto names = eval_strings(stack_expr);
    if (names.size() != 1) return std::nullopt;
    const std::string& want = names[0];
    auto has_component = [&](const std::string& path) {
      for (size_t start = 0; start <= path.size();) {
        size_t dot = path.find('.', start);
        if (dot == std::string::npos) dot = path.size();
        if (path.compare(start, dot - start, want) == 0 && dot - start == want.size()) return true;
        start = dot + 1;
      }
      return false;
    };
    std::vector<std::string> known;
    auto add_known = [&](const std::string& path) {
      known.push_back(path);
      for (size_t b = 0, e; b < path.size(); b = e + 1) {
        e = path.find('.', b);
        if (e == std::string::npos) e = path.size();
        known.push_back(path.substr(b, e - b));
      }
    };
    auto stack_hit = [&](const Stack& st) {
      return Range{st.first_layer, st.first_layer + st.num_layers, "stack '" + st.container + "'"};
    };
    for (const auto& st : inv_.stacks)
      if (st.container == want) return stack_hit(st);
    for (int tower_pass = 0; tower_pass < 2; ++tower_pass)  // the trunk's stacks first
      for (const auto& st : inv_.stacks)
        if ((st.tower >= 0) == (tower_pass == 1) && has_component(st.container))
          return stack_hit(st);
    int32_t begin = -1, end = -1, count = 0;
    std::string roots;
    for (const auto& t : inv_.towers) {
      add_known(t.root);
      known.push_back(t.modality);
      if (t.modality != want && !has_component(t.root)) continue;
      for (int32_t si : t.stacks) {
        const Stack& st = inv_.stacks[static_cast<size_t>(si)];
        begin = begin < 0 ? st.first_layer : std::min(begin, st.first_layer);
        end = std::max(end, st.first_layer + st.num_layers);
        count += st.num_layers;
      }
      roots += (roots.empty() ? "'" : ", '") + t.root + "'";
    }
    if (begin >= 0 && end - begin == count)
      return Range{begin, end, t_or_towers(roots) + " " + roots};
    for (const auto& st : inv_.stacks) add_known(st.container);
    std::string list;
    for (const auto& st : inv_.stacks) list += (list.empty() ? "" : ", ") + st.container;
    for (const auto& t : inv_.towers) list += ", " + t.modality + " (the tower '" + t.root + "')";
    diags_.error("unknown-stack",
                 "no stack '" + want + "' in " + inv_.source + did_you_mean(want, known),
                 stack_expr.loc(), {list.empty() ? "the model has no stacks" : "stacks: " + list});
    return std::nullopt;
  }
  static std::string t_or_towers(const std::string& roots) {
    return roots.find(',') == std::string::npos ? "tower" : "towers";
  }

  Bitset layers_to_params(const std::vector<int32_t>& layers) {
    Bitset b(n_);
    for (int32_t l : layers)
      for (uint32_t q : inv_.layers[l].params) b.set(q);
    return b;
  }

  bool require_layers(const Selector& s) {
    if (!inv_.layers.empty()) return true;
    diags_.error("no-layers",
                 "'" + s.text + "' selects layers, but " + inv_.source + " has no repeated blocks",
                 s.loc,
                 {"add a `discovery: layers:` pattern (e.g. 'backbone\\.blocks\\.#') if the model "
                  "has layers"});
    return false;
  }

  std::optional<std::vector<int32_t>> layer_list(const Selector& s) {
    if (!require_layers(s)) return std::nullopt;
    auto range = stack_range(s.stack);
    if (!range) return std::nullopt;
    const int64_t L = range->end - range->begin;
    std::string count_text = range->what == "the model"
                                 ? layer_count_text()
                                 : range->what + " has " + std::to_string(L) + " layers";
    std::vector<int32_t> out;
    auto push = [&](int64_t local) { out.push_back(static_cast<int32_t>(range->begin + local)); };
    switch (s.layer_form) {
      case Selector::LayerForm::kFirst:
      case Selector::LayerForm::kLast: {
        auto n =
            eval_int(s.amount, s.layer_form == Selector::LayerForm::kFirst ? "'first'" : "'last'");
        if (!n) return std::nullopt;
        if (*n < 0 || *n > L) {
          diags_.error("out-of-range",
                       std::string(s.layer_form == Selector::LayerForm::kFirst ? "first" : "last") +
                           ": " + std::to_string(*n) + " is out of range: " + count_text,
                       s.amount.loc());
          return std::nullopt;
        }
        for (int64_t i = 0; i < *n; ++i)
          push(s.layer_form == Selector::LayerForm::kFirst ? i : L - *n + i);
        return out;
      }
      case Selector::LayerForm::kFirstRatio:
      case Selector::LayerForm::kLastRatio: {
        auto r = eval_number(s.amount, "a ratio");
        if (!r) return std::nullopt;
        if (!(*r >= 0.0 && *r <= 1.0)) {
          diags_.error(
              "out-of-range",
              "ratio " + Value::real(*r).to_string() + " is outside [0, 1] (" + count_text + ")",
              s.amount.loc());
          return std::nullopt;
        }
        // floor(r * L), robust to 0.1 * 30 = 2.9999999999999996.
        int64_t n = static_cast<int64_t>(std::floor(*r * static_cast<double>(L) + 1e-9));
        n = std::min<int64_t>(n, L);
        for (int64_t i = 0; i < n; ++i)
          push(s.layer_form == Selector::LayerForm::kFirstRatio ? i : L - n + i);
        return out;
      }
      case Selector::LayerForm::kIndices: {
        std::set<int32_t> chosen;
        for (const auto& e : s.indices) {
          auto v = e.eval(scope_, diags_);
          if (!v) return std::nullopt;
          Slice sl;
          std::string text = v->kind == Value::Kind::kString ? v->s : v->to_string();
          if (v->kind == Value::Kind::kInt) {
            sl.single = true;
            sl.start = v->i;
          } else if (v->kind == Value::Kind::kString) {
            std::string err;
            auto parsed = parse_slice(v->s, &err);
            if (!parsed) {
              diags_.error("bad-slice", err, e.loc());
              return std::nullopt;
            }
            sl = *parsed;
          } else {
            diags_.error("wrong-type",
                         "a layer index must be an int or a slice, got " + v->to_string(), e.loc());
            return std::nullopt;
          }
          if (sl.single) {
            int64_t i = *sl.start;
            if (i < -L || i >= L) {
              diags_.error("out-of-range",
                           "layer index " + std::to_string(i) + " is out of range: " + count_text,
                           e.loc());
              return std::nullopt;
            }
            chosen.insert(static_cast<int32_t>(range->begin + (i < 0 ? i + L : i)));
            continue;
          }
          auto bound = [&](std::optional<int64_t> b, int64_t dflt) -> std::optional<int64_t> {
            if (!b) return dflt;
            if (*b < -L || *b > L) {
              diags_.error("out-of-range",
                           "slice '" + text + "' reaches layer " + std::to_string(*b) +
                               ", out of range: " + count_text,
                           e.loc());
              return std::nullopt;
            }
            return *b < 0 ? *b + L : *b;
          };
          auto a = bound(sl.start, 0), b = bound(sl.stop, L);
          if (!a || !b) return std::nullopt;
          for (int64_t i = *a; i < *b; i += sl.step)
            chosen.insert(static_cast<int32_t>(range->begin + i));
        }
        out.assign(chosen.begin(), chosen.end());
        return out;
      }
    }
    return out;
  }

  DynamicSet resolve_kind(const Selector& s) {
    switch (s.kind) {
      case Selector::Kind::kAll: return leaf(Bitset(n_, true));
      case Selector::Kind::kRole: return leaf(role_set(s.role));
      case Selector::Kind::kLayers: {
        auto l = layer_list(s);
        return leaf(l ? layers_to_params(*l) : Bitset(n_));
      }
      case Selector::Kind::kStack: {
        if (!require_layers(s)) return leaf(Bitset(n_));
        auto r = stack_range(s.stack);
        std::vector<int32_t> l;
        if (r)
          for (int32_t i = r->begin; i < r->end; ++i) l.push_back(i);
        return leaf(layers_to_params(l));
      }
      case Selector::Kind::kRegex: {
        Bitset b(n_);
        auto it = regex_of_.find(&s);
        if (it != regex_of_.end() && !pattern_sets_.empty())
          for (int id : it->second) b |= pattern_sets_[id];
        return leaf(std::move(b));
      }
      case Selector::Kind::kModuleType: {
        Bitset b(n_);
        std::vector<std::unique_ptr<RE2>> res;
        for (const auto& text : eval_strings(s.strings)) {
          RE2::Options o;
          o.set_log_errors(false);
          auto re = std::make_unique<RE2>(text, o);
          if (!re->ok()) {
            diags_.error("bad-regex", "invalid module_type pattern '" + text + "': " + re->error(),
                         s.strings.loc());
            continue;
          }
          res.push_back(std::move(re));
        }
        std::unordered_map<std::string_view, bool> cache;
        for (size_t i = 0; i < n_; ++i) {
          const std::string& t = inv_.params[i].module_type;
          if (t.empty()) continue;
          auto c = cache.find(std::string_view(t));
          if (c == cache.end()) {
            bool hit = false;
            for (const auto& re : res) hit = hit || RE2::FullMatch(t, *re);
            c = cache.emplace(t, hit).first;
          }
          if (c->second) b.set(i);
        }
        return leaf(std::move(b));
      }
      case Selector::Kind::kLeaf: {
        Bitset b(n_);
        auto leaves = eval_strings(s.strings);
        std::set<std::string, std::less<>> want(leaves.begin(), leaves.end());
        auto leaf_of = [](const std::string& n) {
          auto d = n.rfind('.');
          return d == std::string::npos ? std::string_view(n) : std::string_view(n).substr(d + 1);
        };
        for (size_t i = 0; i < n_; ++i) {
          const Param& p = inv_.params[i];
          bool hit = want.count(leaf_of(p.name)) > 0;
          for (const auto& a : p.aliases) hit = hit || want.count(leaf_of(a)) > 0;
          if (hit) b.set(i);
        }
        return leaf(std::move(b));
      }
      case Selector::Kind::kAnyOf:
      case Selector::Kind::kAllOf: {
        std::vector<DynamicSet> kids;
        bool all_static = true;
        for (const auto& c : s.children) {
          kids.push_back(resolve(c));
          all_static = all_static && kids.back().is_static();
        }
        if (kids.empty()) return leaf(Bitset(n_));
        if (all_static) {
          Bitset b = kids[0].leaf;
          for (size_t i = 1; i < kids.size(); ++i) {
            if (s.kind == Selector::Kind::kAnyOf)
              b |= kids[i].leaf;
            else
              b &= kids[i].leaf;
          }
          return leaf(std::move(b));
        }
        DynamicSet d;
        d.op =
            s.kind == Selector::Kind::kAnyOf ? DynamicSet::Op::kUnion : DynamicSet::Op::kIntersect;
        d.kids = std::move(kids);
        return d;
      }
      case Selector::Kind::kRandomLayers: {
        if (!require_layers(s)) return leaf(Bitset(n_));
        DynamicSet d;
        d.op = DynamicSet::Op::kRandom;
        d.mask = s.children.empty() ? role_set(Role::kLayer) : resolve(s.children[0]).leaf;
        if (!s.children.empty() && !resolve(s.children[0]).is_static()) {
          diags_.error("nested-random", "'from' of random_layers cannot itself be random", s.loc);
          return leaf(Bitset(n_));
        }
        std::set<int32_t> pool;
        d.mask.for_each([&](size_t i) {
          if (inv_.params[i].layer >= 0) pool.insert(inv_.params[i].layer);
        });
        d.pool.assign(pool.begin(), pool.end());
        auto count = eval_int(s.amount, "'count'");
        auto seed = eval_int(s.seed, "'seed'");
        if (!count || !seed) return leaf(Bitset(n_));
        if (*count < 0 || *count > static_cast<int64_t>(d.pool.size())) {
          diags_.error("out-of-range",
                       "random_layers count " + std::to_string(*count) +
                           " is out of range: it draws from " + std::to_string(d.pool.size()) +
                           " layers (" + layer_count_text() + ")",
                       s.amount.loc());
          return leaf(Bitset(n_));
        }
        d.count = *count;
        d.seed = static_cast<uint64_t>(*seed);
        return d;
      }
    }
    return leaf(Bitset(n_));
  }

  const Inventory& inv_;
  const Scope& scope_;
  Diagnostics& diags_;
  size_t n_;
  Bitset roles_[kNumRoles];
  std::vector<std::pair<std::string, bool>> patterns_;
  std::map<std::pair<std::string, bool>, int> pattern_ids_;
  std::map<const Selector*, std::vector<int>> regex_of_;
  std::vector<Bitset> pattern_sets_;
  std::map<const Selector*, Bitset> cache_;
};

std::string names_list(const Inventory& inv, const std::vector<uint32_t>& idx, size_t max = 5) {
  std::string s;
  for (size_t i = 0; i < idx.size() && i < max; ++i) s += (i ? ", " : "") + inv.params[idx[i]].name;
  if (idx.size() > max) s += ", … (" + std::to_string(idx.size()) + " in all)";
  return s;
}

// Notes that explain why a selector matched nothing on this model.
std::vector<std::string> empty_match_notes(const Selector& s, const Inventory& inv) {
  std::vector<std::string> notes;
  if (s.kind == Selector::Kind::kRole && s.role == Role::kEmbeddings && !inv.stacks.empty() &&
      inv.stacks[0].container == "features")
    notes.push_back(
        "torchvision's features.N models have no embeddings: every features.N is a layer");
  else if (s.kind == Selector::Kind::kRole)
    notes.push_back(inv.source + " has no parameter with role '" + role_name(s.role) + "'");
  if (s.kind == Selector::Kind::kModuleType &&
      std::all_of(inv.params.begin(), inv.params.end(),
                  [](const Param& p) { return p.module_type.empty(); }))
    notes.push_back(
        inv.source +
        " records no module types (a safetensors header has none); select by name instead");
  return notes;
}

// Progressive group keys below the embeddings (-1): the connectors, then each tower, the first
// tower lowest; kLooseKey: a parameter outside every group.
constexpr int32_t kConnectorKey = -2;
constexpr int32_t kLooseKey = std::numeric_limits<int32_t>::min();
int32_t tower_key(int32_t tower) { return -1000000 + tower; }

std::string group_name(const Inventory& inv, int32_t key) {
  if (key == -1) return "embeddings";
  if (key == kConnectorKey) return inv.connectors.size() == 1 ? "connector" : "connectors";
  if (key < kConnectorKey) {
    const Tower& t = inv.towers[static_cast<size_t>(key + 1000000)];
    return t.modality + " tower '" + t.root + "'";
  }
  if (key == inv.num_layers()) return "head";
  return std::to_string(key);
}

class Compiler {
 public:
  Compiler(const StrategyDef& s, const PlanOptions& o, Diagnostics& d) : s_(s), o_(o), diags_(d) {}

  std::optional<CompiledPlan> run(Inventory inv) {
    size_t errors_before = diags_.count(Severity::kError);
    auto scope = bind_params(s_, o_.sets, o_.values, diags_);
    if (!scope) return std::nullopt;
    DiscoveryPatterns patterns =
        DiscoveryPatterns::shipped().merged(s_.discovery, s_.discovery_replace);
    discover_layers(inv, patterns, diags_);
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;

    CompiledPlan plan;
    plan.inventory = std::make_shared<const Inventory>(std::move(inv));
    const Inventory& I = *plan.inventory;
    plan.name = s_.name;
    plan.origin = s_.origin;
    plan.description = s_.description;
    plan.params = *scope;
    scope_ = &plan.params;
    Resolver res(I, *scope, diags_);
    inv_ = &I;
    for (size_t i = 0; i < I.params.size(); ++i)
      if (!I.params[i].aliases.empty()) tied_.push_back(static_cast<uint32_t>(i));
    options(plan, res);

    // Pass 1 collects every regex so one RE2::Set per case mode matches all names once.
    for (const auto& r : s_.rules) res.collect(r.selector);
    for (const auto& st : s_.stages) {
      for (const auto& r : st.rules) res.collect(r.selector);
      if (st.kind == Stage::Kind::kProgressive) res.collect(st.selector);
    }
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;
    res.match_all();

    for (const auto& r : s_.rules)
      if (auto pr = rule(r, res)) plan.initial.push_back(std::move(*pr));
    size_t file_order = 0;
    std::vector<std::pair<size_t, PlanStage>> staged;
    for (const auto& st : s_.stages) {
      if (!res.eval_bool(st.when, true)) continue;
      for (auto& ps : stage(st, res, plan)) staged.push_back({file_order++, std::move(ps)});
    }
    for (auto& [_, ps] : staged) {
      (ps.unit == Trigger::Unit::kEpoch ? plan.uses_epochs : plan.uses_steps) = true;
    }
    if (plan.uses_epochs && plan.uses_steps && !plan.options.steps_per_epoch) {
      SourceLoc at;
      for (auto& [_, ps] : staged)
        if (ps.unit == Trigger::Unit::kStep) {
          at = ps.loc;
          break;
        }
      diags_.error("needs-steps-per-epoch",
                   "this strategy mixes epoch and step triggers, so it needs the number of "
                   "steps per epoch to order them",
                   at, {"pass --steps-per-epoch N, or set options: steps_per_epoch"});
    }
    int64_t spe = plan.options.steps_per_epoch.value_or(1);
    for (auto& [_, ps] : staged)
      ps.key = ps.unit == Trigger::Unit::kEpoch && plan.uses_steps ? ps.at * spe : ps.at;
    std::stable_sort(staged.begin(), staged.end(), [](const auto& a, const auto& b) {
      return a.second.key != b.second.key ? a.second.key < b.second.key : a.first < b.first;
    });
    for (auto& [_, ps] : staged) plan.stages.push_back(std::move(ps));
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;

    plan.finalize();
    warnings(plan);
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;
    return plan;
  }

 private:
  void options(CompiledPlan& plan, Resolver& res) {
    plan.options.batchnorm = s_.options.batchnorm;
    plan.options.optimizer_state = s_.options.optimizer_state;
    if (auto v = res.eval_number(s_.options.unfreeze_lr_scale, "'unfreeze_lr_scale'"))
      plan.options.unfreeze_lr_scale = *v;
    if (auto v = res.eval_number(s_.options.lr_decay, "'lr_decay'")) plan.options.lr_decay = *v;
    if (auto v = res.eval_int(s_.options.steps_per_epoch, "'steps_per_epoch'")) {
      if (*v < 1)
        diags_.error("out-of-range", "steps_per_epoch must be at least 1",
                     s_.options.steps_per_epoch.loc());
      else
        plan.options.steps_per_epoch = *v;
    }
    if (o_.steps_per_epoch) {
      if (*o_.steps_per_epoch < 1)
        diags_.error("out-of-range", "--steps-per-epoch must be at least 1", {});
      else
        plan.options.steps_per_epoch = o_.steps_per_epoch;
    }
  }

  std::optional<PlanRule> rule(const Rule& r, Resolver& res) {
    if (!res.eval_bool(r.when, true)) return std::nullopt;
    PlanRule pr;
    pr.action = r.action;
    pr.prov = {interpolate(r.text, r.loc), r.loc};
    pr.set = res.resolve(r.selector);
    // A model without towers has nothing for `tower` or `connector` to select, and a strategy
    // written for any model (every preset) names them: no warning for that.
    bool multimodal_only = r.selector.kind == Selector::Kind::kRole &&
                           (r.selector.role == Role::kTower || r.selector.role == Role::kConnector);
    if (pr.set.is_static() && !pr.set.leaf.any() && !(multimodal_only && !inv_->multimodal())) {
      no_match_.push_back({&r.selector, pr.prov});
    }
    if (pr.set.is_static()) {
      for (uint32_t i : tied_) {
        if (!pr.set.leaf.test(i)) continue;
        size_t names = 1 + inv_->params[i].aliases.size();
        for (size_t k = 0; k < names; ++k)
          if (!res.matches_name(r.selector, i, k)) {
            pr.partial_ties.push_back(i);
            break;
          }
      }
    }
    return pr;
  }

  // A rule's text with its ${...} replaced by their values, for plans a reader can follow.
  std::string interpolate(const std::string& text, const SourceLoc& loc) {
    if (text.find("${") == std::string::npos) return text;
    std::vector<std::string> names;
    for (const auto& [k, _] : *scope_) names.push_back(k);
    Diagnostics quiet;
    Expr e = Expr::parse(text, loc, names, quiet);
    auto v = quiet.has_errors() ? std::nullopt : e.eval(*scope_, quiet);
    if (!v || v->kind != Value::Kind::kString) return text;
    return v->s;
  }

  std::optional<int64_t> trigger_value(const Trigger& t, Resolver& res, bool positive) {
    auto v = res.eval_int(t.value, std::string("'") + unit_name(t.unit) + "'");
    if (!v) return std::nullopt;
    if (*v > (int64_t{1} << 40)) {
      diags_.error("out-of-range",
                   std::string("a trigger must be at most 2^40, got ") + std::to_string(*v), t.loc);
      return std::nullopt;
    }
    if (*v < (positive ? 1 : 0)) {
      diags_.error("out-of-range",
                   std::string("a trigger must be ") + (positive ? "at least 1" : "non-negative") +
                       ", got " + std::to_string(*v),
                   t.loc);
      return std::nullopt;
    }
    return v;
  }

  std::vector<PlanStage> stage(const Stage& st, Resolver& res, const CompiledPlan& plan) {
    std::vector<PlanStage> out;
    auto at = trigger_value(st.at, res, false);
    if (!at) return out;
    PlanStage ps;
    ps.unit = st.at.unit;
    ps.at = *at;
    ps.loc = st.loc;
    std::string named = st.name.empty() ? "" : " '" + st.name + "'";
    if (st.kind == Stage::Kind::kAt || st.kind == Stage::Kind::kEvery) {
      if (st.kind == Stage::Kind::kEvery) {
        auto k = trigger_value(st.period, res, true);
        if (!k) return out;
        ps.period = *k;
        ps.label = "every" + named + " " + std::to_string(*k) + " " + unit_name(st.period.unit) +
                   (*k == 1 ? "" : "s");
      } else {
        ps.label = "stage" + named + " at " + unit_name(ps.unit) + " " + std::to_string(ps.at);
      }
      for (const auto& r : st.rules)
        if (auto pr = rule(r, res)) ps.rules.push_back(std::move(*pr));
      out.push_back(std::move(ps));
      return out;
    }
    // Progressive: group the selected parameters by layer (an `other` parameter goes with the
    // layer it follows), order the groups, and open one more group at a time.
    DynamicSet sel = res.resolve(st.selector);
    if (!sel.is_static()) {
      diags_.error("progressive-random", "a progressive stage cannot group random_layers", st.loc);
      return out;
    }
    const Inventory& I = *plan.inventory;
    std::map<int32_t, std::vector<uint32_t>> by_layer;
    std::vector<uint32_t> loose;
    sel.leaf.for_each([&](size_t i) {
      const Param& p = I.params[i];
      // Groups in data-flow order: each tower (one group), the connectors (one group), the
      // embeddings, the trunk's layers, the head. So a progressive stage over `all` opens the
      // head first and the embeddings last (ULMFiT), then the connectors and the towers.
      int32_t key = p.role == Role::kTower        ? tower_key(p.part)
                    : p.role == Role::kConnector  ? kConnectorKey
                    : p.layer >= 0                ? p.layer
                    : p.role == Role::kEmbeddings ? -1
                    : p.role == Role::kHead       ? I.num_layers()
                    : p.anchor_layer >= 0         ? p.anchor_layer
                                                  : kLooseKey;
      if (key != kLooseKey)
        by_layer[key].push_back(static_cast<uint32_t>(i));
      else
        loose.push_back(static_cast<uint32_t>(i));
    });
    if (!loose.empty())
      diags_.warning("progressive-loose",
                     "progressive stage: " + std::to_string(loose.size()) +
                         " selected parameters are outside every layer and are not grouped: " +
                         names_list(I, loose),
                     st.loc);
    if (by_layer.empty()) {
      no_match_.push_back({&st.selector, {"progressive " + st.selector.text, st.loc}});
      return out;
    }
    std::vector<int32_t> order;
    for (auto& [l, _] : by_layer) order.push_back(l);
    if (st.top_down) std::reverse(order.begin(), order.end());
    auto gs = res.eval_int(st.group_size, "'group_size'");
    if (!gs) return out;
    if (*gs < 1) {
      diags_.error("out-of-range", "group_size must be at least 1", st.group_size.loc());
      return out;
    }
    const int64_t G = (static_cast<int64_t>(order.size()) + *gs - 1) / *gs;
    std::optional<int64_t> span;
    Trigger::Unit unit = st.at.unit;
    if (st.has_every)
      span = trigger_value(st.period, res, true);
    else
      span = trigger_value(*st.over, res, false);
    if (!span) return out;
    std::map<int64_t, std::vector<int64_t>> groups_at;  // time -> group numbers
    for (int64_t g = 0; g < G; ++g) {
      int64_t d = st.has_every ? g * *span : (*span == 0 ? 0 : (g * *span) / G + 1);
      groups_at[*at + d].push_back(g);
    }
    for (auto& [t, gs_here] : groups_at) {
      PlanStage p;
      p.unit = unit;
      p.at = t;
      p.loc = st.loc;
      PlanRule pr;
      pr.action = st.action;
      pr.set.leaf = Bitset(I.params.size());
      std::vector<std::string> layer_names;
      for (int64_t g : gs_here) {
        for (int64_t k = g * *gs;
             k < std::min<int64_t>((g + 1) * *gs, static_cast<int64_t>(order.size())); ++k) {
          for (uint32_t q : by_layer[order[k]]) pr.set.leaf.set(q);
          layer_names.push_back(group_name(I, order[k]));
        }
      }
      std::string groups = gs_here.size() == 1 ? "group " + std::to_string(gs_here[0] + 1)
                                               : "groups " + std::to_string(gs_here.front() + 1) +
                                                     "–" + std::to_string(gs_here.back() + 1);
      std::string layers;
      auto is_number = [](const std::string& t) {
        return !t.empty() && std::isdigit(static_cast<unsigned char>(t[0]));
      };
      for (size_t i = 0; i < layer_names.size(); ++i) {
        bool numeric = is_number(layer_names[i]);
        bool prev_numeric = i > 0 && is_number(layer_names[i - 1]);
        layers += (i ? ", " : "") + std::string(numeric && !prev_numeric ? "layers " : "") +
                  layer_names[i];
      }
      p.label = "progressive" + named + " " + groups + "/" + std::to_string(G) + " at " +
                unit_name(unit) + " " + std::to_string(t);
      pr.prov = {std::string(action_name(st.action)) + " " + layers + " (progressive " + groups +
                     " of " + std::to_string(G) + ")",
                 st.loc};
      p.rules.push_back(std::move(pr));
      out.push_back(std::move(p));
    }
    return out;
  }

  void warnings(CompiledPlan& plan) {
    const Inventory& I = *plan.inventory;
    std::vector<Diagnostic> ws;
    for (const auto& [sel, prov] : no_match_) {
      Diagnostic d{Severity::kWarning, "no-match",
                   "'" + prov.text + "' selects no parameter of " + I.source, prov.loc,
                   empty_match_notes(*sel, I)};
      ws.push_back(d);
    }
    // Tied tensors: a rule that changes the state of a shared tensor while naming only some of
    // its names also changes it under the others.
    std::vector<const PlanRule*> order;
    for (const auto& r : plan.initial) order.push_back(&r);
    for (const auto& st : plan.stages)
      if (st.period == 0)
        for (const auto& r : st.rules) order.push_back(&r);
    for (size_t i = 0; i < I.params.size(); ++i) {
      const Param& p = I.params[i];
      if (p.aliases.empty()) continue;
      bool frozen = false;
      for (const PlanRule* r : order) {
        if (!r->set.is_static() || !r->set.leaf.test(i)) continue;
        bool now = r->action == Action::kFreeze;
        bool partial =
            std::find(r->partial_ties.begin(), r->partial_ties.end(), i) != r->partial_ties.end();
        if (now != frozen && partial) {
          std::string names = "'" + p.name + "'";
          for (const auto& a : p.aliases) names += " = '" + a + "'";
          ws.push_back(
              {Severity::kWarning,
               "tied-conflict",
               "'" + r->prov.text + "' " + (now ? "freezes" : "unfreezes") + " the tied tensor " +
                   names +
                   " through only some of its names; every name follows, since it is one tensor",
               r->prov.loc,
               {"the last rule that selects any of its names decides its state"}});
        }
        frozen = now;
      }
    }
    std::vector<uint32_t> other_idx;
    for (size_t i = 0; i < I.params.size(); ++i)
      if (I.params[i].role == Role::kOther) other_idx.push_back(static_cast<uint32_t>(i));
    if (!other_idx.empty() && !I.layers.empty()) {
      Diagnostic d;
      d.severity = Severity::kWarning;
      d.code = "other-params";
      d.message =
          std::to_string(other_idx.size()) +
          (other_idx.size() == 1 ? " parameter has" : " parameters have") +
          " role 'other' (outside layers, embeddings and head): " + names_list(I, other_idx);
      d.notes.push_back("select them with `other`, by name, or give them a role with `discovery:`");
      ws.push_back(std::move(d));
    }
    for (auto& w : ws) {
      if (o_.strict && w.code == "no-match") w.severity = Severity::kError;
      diags_.add(w);
      if (w.severity == Severity::kWarning) plan.warnings.push_back(w);
    }
  }

  const StrategyDef& s_;
  const PlanOptions& o_;
  Diagnostics& diags_;
  std::vector<std::pair<const Selector*, Provenance>> no_match_;
  const Inventory* inv_ = nullptr;
  const Scope* scope_ = nullptr;
  std::vector<uint32_t> tied_;
};

}  // namespace

std::optional<CompiledPlan> compile(const StrategyDef& s, Inventory inv, const PlanOptions& opts,
                                    Diagnostics& diags) {
  return Compiler(s, opts, diags).run(std::move(inv));
}

}  // namespace layerfreeze
