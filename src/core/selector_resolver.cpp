#include "core/selector_resolver.hpp"
#include "core/regex.hpp"

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "core/expert_config.hpp"
#include "core/layer_discovery.hpp"
#include "core/rules_parser.hpp"

namespace layerfreeze {

Resolver::Resolver(const Inventory& inv, const SliceTable& slices, const Scope& scope,
                   Diagnostics& diags)
    : inv_(inv), slices_(slices), scope_(scope), diags_(diags), n_(inv.params().size()) {
  for (int r = 0; r < kNumRoles; ++r) roles_[r] = Bitset(n_);
  for (size_t i = 0; i < n_; ++i) {
    const Param& p = inv.params()[i];
    roles_[static_cast<int>(p.role)].set(i);
    for (Role ar : p.alias_roles) roles_[static_cast<int>(ar)].set(i);
  }
}

void Resolver::collect(const Selector& s) {
  if (s.kind == Selector::Kind::kRegex) {
    auto list = eval_strings(s.strings);
    bool cs = eval_bool(s.case_sensitive, true);
    std::vector<int> ids;
    for (const auto& text : list) {
      auto key = std::make_pair(text, cs);
      auto it = pattern_ids_.find(key);
      if (it == pattern_ids_.end()) {
        RE2::Options o = re2_options(cs);
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

void Resolver::match_all() {
  pattern_sets_.assign(patterns_.size(), Bitset(n_));
  for (int mode = 0; mode < 2; ++mode) {
    bool cs = mode == 0;
    RE2::Options o = re2_options(cs);
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
        const Param& p = inv_.params()[i];
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

DynamicSet Resolver::resolve(const Selector& s) {
  DynamicSet d = resolve_uncached(s);
  if (d.is_static()) cache_[&s] = d.leaf;
  return d;
}

bool Resolver::matches_name(const Selector& s, size_t i, size_t k) {
  const Param& p = inv_.params()[i];
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
        // Compiled once per (pattern, case mode): tied tensors ask for every name of each.
        auto& re = name_res_[{text, cs}];
        if (!re) re = std::make_unique<RE2>(text, re2_options(cs));
        hit = hit || (re->ok() && RE2::FullMatch(name, *re));
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

DynamicSet Resolver::resolve_uncached(const Selector& s) {
  DynamicSet d = resolve_kind(s);
  if (!s.except.empty()) {
    DynamicSet ex = resolve(s.except[0]);
    if (d.is_static() && ex.is_static()) {
      d.leaf.subtract(ex.leaf);
      d.slices.subtract(ex.slices);
      slices_.normalize(d.leaf, d.slices);
    } else {
      DynamicSet m;
      m.op = DynamicSet::Op::kMinus;
      m.kids = {std::move(d), std::move(ex)};
      d = std::move(m);
    }
  }
  return d;
}

bool Resolver::is_null(const Expr& e) {
  if (e.empty()) return false;
  Diagnostics quiet;
  auto v = e.eval(scope_, quiet);
  return v && v->kind == Value::Kind::kNull;
}

std::optional<int64_t> Resolver::eval_int(const Expr& e, const std::string& what) {
  if (e.empty()) return std::nullopt;
  auto v = e.eval(scope_, diags_);
  if (!v) return std::nullopt;
  if (v->kind != Value::Kind::kInt) {
    diags_.error("wrong-type", what + " must be an int, got " + v->to_string(), e.loc());
    return std::nullopt;
  }
  return v->i;
}

std::optional<double> Resolver::eval_number(const Expr& e, const std::string& what) {
  if (e.empty()) return std::nullopt;
  auto v = e.eval(scope_, diags_);
  if (!v) return std::nullopt;
  if (!v->is_number()) {
    diags_.error("wrong-type", what + " must be a number, got " + v->to_string(), e.loc());
    return std::nullopt;
  }
  return v->number();
}

bool Resolver::eval_bool(const Expr& e, bool fallback) {
  if (e.empty()) return fallback;
  auto v = e.eval(scope_, diags_);
  if (!v) return fallback;
  if (v->kind != Value::Kind::kBool) {
    diags_.error("wrong-type", "expected true or false, got " + v->to_string(), e.loc());
    return fallback;
  }
  return v->b;
}

std::vector<std::string> Resolver::eval_strings(const Expr& e) {
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

DynamicSet Resolver::leaf(Bitset b) {
  DynamicSet d;
  d.slices = slices_.expand(b);
  d.leaf = std::move(b);
  return d;
}

std::optional<Resolver::Range> Resolver::stack_range(const Expr& stack_expr) {
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
      if ((st.tower >= 0) == (tower_pass == 1) && has_component(st.container)) return stack_hit(st);
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
               "no stack '" + want + "' in " + inv_.facts().source + did_you_mean(want, known),
               stack_expr.loc(), {list.empty() ? "the model has no stacks" : "stacks: " + list});
  return std::nullopt;
}

std::string Resolver::t_or_towers(const std::string& roots) {
  return roots.find(',') == std::string::npos ? "tower" : "towers";
}

Bitset Resolver::layers_to_params(const std::vector<int32_t>& layers) {
  Bitset b(n_);
  for (int32_t l : layers)
    for (uint32_t q : inv_.layers[l].params) b.set(q);
  return b;
}

bool Resolver::require_layers(const Selector& s) {
  if (!inv_.layers.empty()) return true;
  diags_.error(
      "no-layers",
      "'" + s.text + "' selects layers, but " + inv_.facts().source + " has no repeated blocks",
      s.loc,
      {"add a `discovery: layers:` pattern (e.g. 'backbone\\.blocks\\.#') if the model "
       "has layers"});
  return false;
}

std::optional<std::vector<int32_t>> Resolver::layer_list(const Selector& s) {
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
    case Selector::LayerForm::kIndices: return indexed_layers(s, *range, count_text);
  }
  return out;
}

std::optional<std::vector<int32_t>> Resolver::indexed(const std::vector<Expr>& items,
                                                      const Range& range,
                                                      const std::string& count_text,
                                                      const char* noun) {
  const int64_t L = range.end - range.begin;
  const std::string Noun = noun;
  std::set<int32_t> chosen;
  for (const auto& e : items) {
    auto v = e.eval(scope_, diags_);
    if (!v) return std::nullopt;
    Slice sl;
    std::string text = v->kind == Value::Kind::kString ? v->s : v->to_string();
    if (v->kind == Value::Kind::kInt) {
      sl.single = true;
      sl.start = v->i;
    } else if (v->kind == Value::Kind::kString) {
      std::string err;
      auto parsed = parse_slice(v->s, &err, noun);
      if (!parsed) {
        diags_.error("bad-slice", err, e.loc());
        return std::nullopt;
      }
      sl = *parsed;
    } else {
      diags_.error("wrong-type",
                   "a " + Noun + " index must be an int or a slice, got " + v->to_string(),
                   e.loc());
      return std::nullopt;
    }
    if (sl.single) {
      int64_t i = *sl.start;
      if (i < -L || i >= L) {
        diags_.error("out-of-range",
                     Noun + " index " + std::to_string(i) + " is out of range: " + count_text,
                     e.loc());
        return std::nullopt;
      }
      chosen.insert(static_cast<int32_t>(range.begin + (i < 0 ? i + L : i)));
      continue;
    }
    auto bound = [&](std::optional<int64_t> b, int64_t dflt) -> std::optional<int64_t> {
      if (!b) return dflt;
      if (*b < -L || *b > L) {
        diags_.error("out-of-range",
                     "slice '" + text + "' reaches " + Noun + " " + std::to_string(*b) +
                         ", out of range: " + count_text,
                     e.loc());
        return std::nullopt;
      }
      return *b < 0 ? *b + L : *b;
    };
    auto a = bound(sl.start, 0), b = bound(sl.stop, L);
    if (!a || !b) return std::nullopt;
    for (int64_t i = *a; i < *b; i += sl.step) chosen.insert(static_cast<int32_t>(range.begin + i));
  }
  return std::vector<int32_t>(chosen.begin(), chosen.end());
}

DynamicSet Resolver::resolve_kind(const Selector& s) {
  switch (s.kind) {
    // `all`, a leaf and a module type never reach a multi-token-prediction block: only `mtp`
    // (a role) and a regex name it (docs/RULES.md).
    case Selector::Kind::kAll: return leaf(Bitset(n_, true).subtract(role_set(Role::kMtp)));
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
    case Selector::Kind::kModuleType: return resolve_module_type(s);
    case Selector::Kind::kLeaf: return resolve_leaf(s);
    case Selector::Kind::kAnyOf:
    case Selector::Kind::kAllOf: return resolve_set_op(s);
    case Selector::Kind::kRandomLayers: return resolve_random(s);
    case Selector::Kind::kBlockCycle: return resolve_cycle(s);
    case Selector::Kind::kExperts: return resolve_experts(s);
    case Selector::Kind::kExpertPart: return resolve_expert_part(s);
    case Selector::Kind::kTokens:
    case Selector::Kind::kRows: return resolve_rows(s);
  }
  return leaf(Bitset(n_));
}

// RE2 full match on the owning module's type name, each distinct type matched once.
DynamicSet Resolver::resolve_module_type(const Selector& s) {
  Bitset b(n_);
  std::vector<std::unique_ptr<RE2>> res;
  for (const auto& text : eval_strings(s.strings)) {
    RE2::Options o = re2_options();
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
    const std::string& t = inv_.params()[i].module_type;
    if (t.empty()) continue;
    auto c = cache.find(std::string_view(t));
    if (c == cache.end()) {
      bool hit = false;
      for (const auto& re : res) hit = hit || RE2::FullMatch(t, *re);
      c = cache.emplace(t, hit).first;
    }
    if (c->second) b.set(i);
  }
  return leaf(std::move(b.subtract(role_set(Role::kMtp))));
}

// The last name component under any alias (BitFit's `bias`).
DynamicSet Resolver::resolve_leaf(const Selector& s) {
  Bitset b(n_);
  auto leaves = eval_strings(s.strings);
  std::set<std::string, std::less<>> want(leaves.begin(), leaves.end());
  auto leaf_of = [](const std::string& n) {
    auto d = n.rfind('.');
    return d == std::string::npos ? std::string_view(n) : std::string_view(n).substr(d + 1);
  };
  for (size_t i = 0; i < n_; ++i) {
    const Param& p = inv_.params()[i];
    bool hit = want.count(leaf_of(p.name)) > 0;
    for (const auto& a : p.aliases) hit = hit || want.count(leaf_of(a)) > 0;
    if (hit) b.set(i);
  }
  return leaf(std::move(b.subtract(role_set(Role::kMtp))));
}

// any_of / all_of: static children fold into one set; a random child keeps it dynamic.
DynamicSet Resolver::resolve_set_op(const Selector& s) {
  std::vector<DynamicSet> kids;
  bool all_static = true;
  for (const auto& c : s.children) {
    kids.push_back(resolve(c));
    all_static = all_static && kids.back().is_static();
  }
  if (kids.empty()) return leaf(Bitset(n_));
  if (all_static) {
    DynamicSet d = std::move(kids[0]);
    for (size_t i = 1; i < kids.size(); ++i) {
      if (s.kind == Selector::Kind::kAnyOf) {
        d.leaf |= kids[i].leaf;
        d.slices |= kids[i].slices;
      } else {
        d.leaf &= kids[i].leaf;
        d.slices &= kids[i].slices;
      }
    }
    slices_.normalize(d.leaf, d.slices);
    return d;
  }
  DynamicSet d;
  d.op = s.kind == Selector::Kind::kAnyOf ? DynamicSet::Op::kUnion : DynamicSet::Op::kIntersect;
  d.kids = std::move(kids);
  return d;
}

// random_layers: the pool of layers to draw from; the draw happens per period (CompiledPlan).
DynamicSet Resolver::resolve_random(const Selector& s) {
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
    if (inv_.params()[i].layer >= 0) pool.insert(inv_.params()[i].layer);
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

// The experts each layer keeps: an ESFT config's lists, or the same indices for every layer
// (key -1).
std::optional<std::map<int32_t, std::vector<int32_t>>> Resolver::experts_by_layer(
    const Selector& s) {
  std::map<int32_t, std::vector<int32_t>> out;
  const int64_t E = inv_.num_experts;
  if (!s.from.empty()) {
    auto path = eval_strings(s.from);
    if (path.size() != 1) return std::nullopt;
    // A path written in a rules file is relative to that file; one that comes from a parameter
    // (`--set expert_config=...`) is relative to the working directory.
    const std::string file =
        expert_config_path(path[0], s.from.loc(), s.from.literal_value() != nullptr);
    // `${expert_config}` bound by the caller (`--set`) names the caller's file; a literal or a
    // value a rules file bound (`with:`, a default) comes from the file, and is confined.
    const auto names = s.from.names();
    const bool callers = !s.from.literal_value() && names.size() == 1 &&
                         s.from.text() == "${" + names[0] + "}" && trusted_.count(names[0]) > 0;
    auto config = read_expert_config(file, path[0], inv_, diags_, s.from.loc(), !callers);
    if (!config) return std::nullopt;
    if (config->shared_experts || config->non_expert_modules)
      diags_.warning(
          "expert-config-flags",
          "expert config '" + path[0] +
              "' says shared_experts: " + (config->shared_experts ? "true" : "false") +
              ", non_expert_modules: " + (config->non_expert_modules ? "true" : "false") +
              "; an 'experts' selector picks the routed experts it lists only",
          s.from.loc(),
          {"preset:esft applies them: --set shared_experts=true / non_expert_modules=true"});
    for (auto& [layer, list] : config->experts) out[layer] = std::move(list);
    return out;
  }
  if (s.experts.empty()) {
    std::vector<int32_t> all;
    for (int64_t e = 0; e < E; ++e) all.push_back(static_cast<int32_t>(e));
    out[-1] = std::move(all);
    return out;
  }
  Range r{0, static_cast<int32_t>(E), "the experts"};
  auto list =
      indexed(s.experts, r,
              inv_.facts().source + " has " + std::to_string(E) + " experts per layer", "expert");
  if (!list) return std::nullopt;
  out[-1] = std::move(*list);
  return out;
}

DynamicSet Resolver::resolve_experts(const Selector& s) {
  DynamicSet d = leaf(Bitset(n_));
  if (inv_.num_experts <= 0) {
    if (!s.from.empty())  // reported by read_expert_config, with the file's name
      experts_by_layer(s);
    return d;
  }
  auto by_layer = experts_by_layer(s);
  if (!by_layer) return d;
  std::optional<Bitset> within;
  if (!s.children.empty()) within = resolve(s.children[0]).leaf;
  auto experts_of = [&](int32_t layer) -> const std::vector<int32_t>* {
    auto it = by_layer->find(by_layer->count(-1) ? -1 : layer);
    return it == by_layer->end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i < n_; ++i) {
    const Param& p = inv_.params()[i];
    if (p.role != Role::kLayer || (within && !within->test(i))) continue;
    if (p.expert_part == ExpertPart::kRouted) {
      const auto* list = experts_of(p.layer);
      if (list && std::find(list->begin(), list->end(), p.expert) != list->end()) d.leaf.set(i);
    } else if (p.expert_part == ExpertPart::kFused && slices_.slot[i] >= 0) {
      const auto* list = experts_of(p.layer);
      if (!list) continue;
      const size_t k = static_cast<size_t>(slices_.slot[i]);
      for (int32_t e : *list)
        if (e < slices_.slices_of(k)) d.slices.set(slices_.first[k] + static_cast<size_t>(e));
    }
  }
  slices_.normalize(d.leaf, d.slices);
  return d;
}

DynamicSet Resolver::resolve_expert_part(const Selector& s) {
  Bitset b(n_);
  for (size_t i = 0; i < n_; ++i)
    if (inv_.params()[i].expert_part == s.part) b.set(i);
  return leaf(std::move(b));
}

const Resolver::TokenRows& Resolver::token_rows() {
  if (token_rows_) return *token_rows_;
  TokenRows t;
  for (size_t i = 0; i < n_; ++i) {
    const Param& p = inv_.params()[i];
    if (p.role != Role::kEmbeddings || !p.shape_known || p.shape.size() != 2) continue;
    if (p.shape[0] > t.vocab) {
      t.vocab = p.shape[0];
      t.embedding = static_cast<uint32_t>(i);
    }
  }
  if (t.vocab > 0) {
    for (size_t i = 0; i < n_; ++i) {
      const Param& p = inv_.params()[i];
      bool head = p.role == Role::kHead;
      for (Role r : p.alias_roles) head = head || r == Role::kHead;
      if (i == t.embedding || (head && p.shape_known && !p.shape.empty() && p.shape.size() <= 2 &&
                               p.shape[0] == t.vocab))
        t.tensors.push_back(static_cast<uint32_t>(i));
    }
  }
  token_rows_ = std::move(t);
  return *token_rows_;
}

std::vector<uint32_t> Resolver::row_targets(const Selector& s) {
  if (s.kind == Selector::Kind::kTokens) return token_rows().tensors;
  std::vector<uint32_t> out;
  if (s.children.empty()) return out;
  DynamicSet of = resolve(s.children[0]);
  if (!of.is_static()) {
    diags_.error("bad-value", "'of' of 'rows' names fixed tensors; it cannot be random_layers",
                 s.children[0].loc);
    return out;
  }
  for (size_t i = 0; i < n_; ++i)
    if (of.leaf.test(i) || slices_.count(static_cast<uint32_t>(i), of.slices) > 0)
      out.push_back(static_cast<uint32_t>(i));
  return out;
}

void Resolver::add_row_tensors(const std::vector<const Selector*>& roots, SliceTable& table) {
  std::vector<const Selector*> todo(roots.begin(), roots.end());
  std::set<uint32_t> wanted;
  bool reported_size = false;
  while (!todo.empty()) {
    const Selector* s = todo.back();
    todo.pop_back();
    for (const auto& c : s->children) todo.push_back(&c);
    for (const auto& c : s->except) todo.push_back(&c);
    if (s->kind != Selector::Kind::kTokens && s->kind != Selector::Kind::kRows) continue;
    if (s->kind == Selector::Kind::kTokens && token_rows().vocab == 0) {
      diags_.error("no-token-rows",
                   "'tokens' takes rows of the token embeddings, but " + inv_.facts().source +
                       " has no 2-D embeddings tensor",
                   s->loc, {"cut another tensor's rows with {rows: SLICE, of: SELECTOR}"});
      continue;
    }
    for (uint32_t i : row_targets(*s)) {
      const Param& p = inv_.params()[i];
      if (!p.shape_known || p.shape.empty() || p.shape[0] <= 0) {
        if (!reported_size)
          diags_.error("rows-unknown-shape",
                       "'rows' cuts a tensor along its first dimension, but " + p.name +
                           (p.shape_known
                                ? " has no rows (a scalar)"
                                : " has no known shape (" + inv_.facts().source + " does not say)"),
                       s->loc, {"read the model from a source that gives shapes"});
        reported_size = true;
        continue;
      }
      wanted.insert(i);
    }
  }
  size_t total = table.size();
  for (uint32_t i : wanted) {
    if (table.slot[i] >= 0) continue;  // a fused expert tensor: its rows are its experts
    total += static_cast<size_t>(inv_.params()[i].shape[0]);
    if (total > SliceTable::kMaxSlices) {
      diags_.error("too-many-rows",
                   "row selectors cut more than " + std::to_string(SliceTable::kMaxSlices) +
                       " rows in all (" + inv_.params()[i].name + " and the tensors before it)",
                   roots.empty() ? SourceLoc{} : roots.front()->loc,
                   {"cut the rows of fewer or smaller tensors"});
      return;
    }
    table.add_rows(i, inv_.params()[i].shape[0]);
  }
  cache_.clear();
}

DynamicSet Resolver::resolve_rows(const Selector& s) {
  DynamicSet d = leaf(Bitset(n_));
  const bool tokens = s.kind == Selector::Kind::kTokens;
  std::map<int64_t, std::optional<std::vector<int32_t>>> by_count;  // rows -> the chosen rows
  for (uint32_t i : row_targets(s)) {
    if (slices_.slot[i] < 0) continue;  // reported by add_row_tensors
    const size_t k = static_cast<size_t>(slices_.slot[i]);
    const int64_t R = slices_.slices_of(k);
    auto it = by_count.find(R);
    if (it == by_count.end()) {
      const std::string count_text =
          tokens ? "the token embedding " + inv_.params()[token_rows().embedding].name + " has " +
                       std::to_string(R) + " rows"
                 : inv_.params()[i].name + " has " + std::to_string(R) + " rows";
      it = by_count
               .emplace(R, indexed(s.rows, Range{0, static_cast<int32_t>(R), "rows"}, count_text,
                                   tokens ? "token" : "row"))
               .first;
    }
    if (!it->second) return d;
    if (it->second->empty()) {
      diags_.error("out-of-range",
                   s.text + " selects no row: " +
                       (tokens ? "the token embedding " + inv_.params()[token_rows().embedding].name
                               : inv_.params()[i].name) +
                       " has " + std::to_string(R) + " rows",
                   s.rows.empty() ? s.loc : s.rows.front().loc(),
                   {tokens ? "new tokens need the resized model: plan against the checkpoint "
                             "saved after resize_token_embeddings (or a module that has them)"
                           : "rows count from 0 along the tensor's first dimension"});
      it->second = std::nullopt;
      return d;
    }
    for (int32_t r : *it->second) d.slices.set(slices_.first[k] + static_cast<size_t>(r));
  }
  slices_.normalize(d.leaf, d.slices);
  return d;
}

}  // namespace layerfreeze
