#include "core/selector_parser.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <optional>

#include "core/regex.hpp"

namespace layerfreeze {

namespace {

constexpr int kMaxSelectorDepth = 32;

const std::vector<std::string> kSelectorKeys = {
    "role",   "layers",        "stack",  "regex",          "module_type", "leaf",   "any_of",
    "all_of", "random_layers", "except", "case_sensitive", "experts",     "tokens", "rows",
    "of",     "block_cycle"};
const std::vector<std::string> kSelectorWords = {
    "all",       "embeddings", "head",    "layers",         "other", "tower",
    "connector", "experts",    "routers", "shared_experts", "mtp"};

}  // namespace

std::vector<std::string> SelectorParser::known() const {
  std::vector<std::string> names;
  for (const auto& p : s_.params) names.push_back(p.name);
  return names;
}

Expr SelectorParser::expr(const YAML::Node& n, const std::string& what) {
  if (n.IsScalar() && n.Scalar().find("${") != std::string::npos)
    return Expr::parse(n.Scalar(), r_.loc(n), known(), r_.diags());
  auto v = r_.value(n, what);
  return Expr::literal(v.value_or(Value::null()), r_.loc(n));
}

// A literal that must have a kind (checked now); expressions are checked when evaluated.
Expr SelectorParser::typed(const YAML::Node& n, const std::string& what,
                           std::initializer_list<Value::Kind> kinds) {
  Expr e = expr(n, what);
  if (const Value* v = e.literal_value()) {
    bool ok = false;
    for (auto k : kinds)
      ok = ok || v->kind == k || (k == Value::Kind::kFloat && v->kind == Value::Kind::kInt);
    if (!ok) {
      std::string want;
      for (auto k : kinds) want += std::string(want.empty() ? "" : " or ") + kind_name(k);
      r_.error("wrong-type", what + " must be " + want + ", not " + describe(n), n);
    }
  }
  return e;
}

Expr SelectorParser::strings(const YAML::Node& n, const std::string& what) {
  if (n.IsSequence()) {
    for (const auto& c : n)
      if (!c.IsScalar()) r_.error("wrong-type", what + " must be a string or a list of strings", c);
    if (n.size() == 0) r_.error("bad-value", what + " must not be empty", n);
  } else if (!n.IsScalar() ||
             (n.Tag() != "!" && typed_scalar(n.Scalar(), false).kind != Value::Kind::kString &&
              n.Scalar().find("${") == std::string::npos)) {
    r_.error("wrong-type", what + " must be a string or a list of strings, not " + describe(n), n);
  }
  Expr e = expr(n, what);
  if (const Value* v = e.literal_value()) {
    // Numbers written without quotes in a list of names are still names.
    Value fixed = *v;
    if (fixed.kind != Value::Kind::kList) fixed = Value::of_list({fixed});
    for (auto& item : fixed.list)
      item = Value::string(item.kind == Value::Kind::kString ? item.s : item.to_string());
    e = Expr::literal(fixed, e.loc());
  }
  return e;
}

void SelectorParser::check_regexes(const Expr& e, const YAML::Node& n, const char* what) {
  const Value* v = e.literal_value();
  if (!v) return;
  for (size_t i = 0; i < v->list.size(); ++i) {
    RE2::Options o = re2_options();
    RE2 re(v->list[i].s, o);
    if (!re.ok()) {
      YAML::Node at = n.IsSequence() ? n[i] : n;
      r_.error("bad-regex",
               std::string("invalid ") + what + " '" + v->list[i].s + "': " + re.error(), at);
    }
  }
}

void SelectorParser::check_slice(const Expr& e, const YAML::Node& n, const char* noun) {
  const Value* v = e.literal_value();
  if (!v) return;
  if (v->kind == Value::Kind::kInt) return;
  if (v->kind != Value::Kind::kString) {
    r_.error("wrong-type",
             std::string(noun[0] == 'e' ? "an " : "a ") + noun +
                 " index must be an integer or a slice like \"0:16\", not " + describe(n),
             n);
    return;
  }
  std::string err;
  if (!parse_slice(v->s, &err, noun)) r_.error("bad-slice", err, n);
}

Selector SelectorParser::selector(const YAML::Node& n, const std::string& what) {
  Selector sel;
  sel.loc = r_.loc(n);
  // YAML aliases can make a selector contain itself; deep nesting is never meant.
  struct Depth {
    int& d;
    explicit Depth(int& x) : d(++x) {}
    ~Depth() { --d; }
  } guard(depth_);
  if (depth_ > kMaxSelectorDepth) {
    if (!depth_reported_)
      r_.error("too-deep",
               "selectors nest more than " + std::to_string(kMaxSelectorDepth) +
                   " levels (or refer to themselves through a YAML alias)",
               n);
    depth_reported_ = true;
    return sel;
  }
  if (n.IsScalar()) {
    word_selector(n, sel);
    return sel;
  }
  if (n.IsSequence()) {
    sel.kind = Selector::Kind::kAnyOf;
    for (const auto& c : n) sel.children.push_back(selector(c, what));
    if (sel.children.empty()) r_.error("bad-value", what + " is an empty list", n);
    sel.text = list_text(sel.children, "any_of");
    return sel;
  }
  map_selector(n, what, sel);
  return sel;
}

// `all` or a role word.
void SelectorParser::word_selector(const YAML::Node& n, Selector& sel) {
  std::string w = n.Scalar();
  if (w == "all") {
    sel.kind = Selector::Kind::kAll;
  } else if (w == "experts") {
    sel.kind = Selector::Kind::kExperts;
  } else if (w == "routers" || w == "shared_experts") {
    sel.kind = Selector::Kind::kExpertPart;
    sel.part = w == "routers" ? ExpertPart::kRouter : ExpertPart::kShared;
  } else if (auto role = parse_role(w); role && w != "layer") {
    sel.kind = Selector::Kind::kRole;
    sel.role = *role;
  } else {
    r_.error("unknown-selector", "unknown selector '" + w + "'" + did_you_mean(w, kSelectorWords),
             n,
             {"a selector is all, embeddings, head, layers, other, tower, connector, mtp, experts, "
              "routers, shared_experts, a list (any of), or a map with one of: role, layers, "
              "stack, regex, module_type, leaf, any_of, all_of, random_layers, block_cycle, "
              "experts, tokens, rows"});
  }
  sel.text = w;
}

// A map: one kind key (role, layers, stack, regex, …), and `except`, `case_sensitive`,
// `stack` beside it.
void SelectorParser::map_selector(const YAML::Node& n, const std::string& what, Selector& sel) {
  auto es = r_.entries(n, what, kSelectorKeys);
  if (!n.IsMap()) return;
  const YAML::Node* primary = nullptr;
  std::string primary_key;
  const YAML::Node *except = nullptr, *case_flag = nullptr, *stack = nullptr;
  const YAML::Node* in_layers = nullptr;  // `layers` beside `experts`
  const YAML::Node* of = nullptr;         // `of` beside `rows`
  auto has = [&](const char* key) {
    return std::any_of(es.begin(), es.end(), [&](const auto& e) { return e.key == key; });
  };
  const bool has_experts = has("experts"), has_rows = has("rows");
  for (const auto& e : es) {
    if (e.key == "layers" && has_experts)
      in_layers = &e.value;
    else if (e.key == "of" && has_rows)
      of = &e.value;
    else if (e.key == "of")
      r_.error("misplaced-key", "'of' names the tensors of 'rows' and goes beside it", e.key_node);
    else if (e.key == "except")
      except = &e.value;
    else if (e.key == "case_sensitive")
      case_flag = &e.value;
    else if (e.key == "stack")
      stack = &e.value;
    else if (primary) {
      r_.error("selector-conflict",
               "a selector has one kind; '" + primary_key + "' and '" + e.key +
                   "' are both given (use all_of or any_of to combine)",
               e.key_node);
    } else {
      primary = &e.value;
      primary_key = e.key;
    }
  }
  if (!primary && stack) {
    primary = stack;
    primary_key = "stack";
    stack = nullptr;
  }
  if (!primary) {
    r_.error("selector-empty", what + " says nothing to select", n);
    return;
  }
  const YAML::Node& v = *primary;
  if (primary_key == "role") {
    role_selector(v, sel);
  } else if (primary_key == "layers") {
    sel.kind = Selector::Kind::kLayers;
    layers(v, sel);
  } else if (primary_key == "stack") {
    sel.kind = Selector::Kind::kStack;
    sel.stack = typed(v, "'stack'", {Value::Kind::kString});
    sel.text = "stack(" + v.Scalar() + ")";
  } else if (primary_key == "regex" || primary_key == "module_type" || primary_key == "leaf") {
    sel.kind = primary_key == "regex"  ? Selector::Kind::kRegex
               : primary_key == "leaf" ? Selector::Kind::kLeaf
                                       : Selector::Kind::kModuleType;
    sel.strings = strings(v, "'" + primary_key + "'");
    if (sel.kind != Selector::Kind::kLeaf)
      check_regexes(sel.strings, v, primary_key == "regex" ? "regex" : "module_type pattern");
    sel.text = primary_key + "(" + flat(v) + ")";
  } else if (primary_key == "any_of" || primary_key == "all_of") {
    sel.kind = primary_key == "any_of" ? Selector::Kind::kAnyOf : Selector::Kind::kAllOf;
    if (!v.IsSequence() || v.size() == 0) {
      r_.error("wrong-type", "'" + primary_key + "' takes a non-empty list of selectors", v);
    } else {
      for (const auto& c : v) sel.children.push_back(selector(c, "a selector in " + primary_key));
    }
    sel.text = list_text(sel.children, primary_key);
  } else if (primary_key == "random_layers") {
    random_layers_selector(v, sel);
  } else if (primary_key == "block_cycle") {
    block_cycle_selector(v, sel);
  } else if (primary_key == "experts") {
    experts_selector(v, sel);
  } else if (primary_key == "tokens" || primary_key == "rows") {
    rows_selector(v, primary_key, sel);
    if (primary_key == "rows") {
      if (of) {
        sel.children.push_back(selector(*of, "'of'"));
        sel.text += " of " + sel.children[0].text;
      } else {
        r_.error("missing-key",
                 "'rows' needs 'of: SELECTOR', the tensors whose rows (first dimension) it takes",
                 n, {"for the token rows of the embeddings and the output layer, use 'tokens'"});
      }
    }
  }
  if (in_layers) {
    Selector l;
    l.kind = Selector::Kind::kLayers;
    l.loc = r_.loc(*in_layers);
    layers(*in_layers, l);
    if (stack) {
      l.stack = typed(*stack, "'stack'", {Value::Kind::kString});
      l.text += "@" + flat(*stack);
      stack = nullptr;
    }
    sel.text += " in " + l.text;
    sel.children.push_back(std::move(l));
  }
  if (case_flag) {
    if (sel.kind != Selector::Kind::kRegex)
      r_.error("misplaced-key", "'case_sensitive' applies to 'regex' only", *case_flag);
    sel.case_sensitive = typed(*case_flag, "'case_sensitive'", {Value::Kind::kBool});
  }
  if (stack) {
    if (sel.kind != Selector::Kind::kLayers)
      r_.error("misplaced-key", "'stack' beside another key applies to 'layers' only", *stack);
    sel.stack = typed(*stack, "'stack'", {Value::Kind::kString});
    sel.text += "@" + flat(*stack);
  }
  if (except) {
    sel.except.push_back(selector(*except, "'except'"));
    sel.text += " except " + sel.except[0].text;
  }
}

void SelectorParser::role_selector(const YAML::Node& v, Selector& sel) {
  if (v.IsSequence()) {
    sel.kind = Selector::Kind::kAnyOf;
    for (const auto& c : v) {
      Selector r = selector(c, "a role");
      if (r.kind != Selector::Kind::kRole)
        r_.error("bad-value",
                 "'role' takes embeddings, head, layers, other, tower, connector or mtp", c);
      sel.children.push_back(r);
    }
    sel.text = list_text(sel.children, "any_of");
  } else {
    sel = selector(v, "a role");
    if (sel.kind != Selector::Kind::kRole)
      r_.error("bad-value", "'role' takes embeddings, head, layers, other, tower, connector or mtp",
               v);
  }
}

void SelectorParser::random_layers_selector(const YAML::Node& v, Selector& sel) {
  sel.kind = Selector::Kind::kRandomLayers;
  sel.seed = Expr::literal(Value::integer(0), r_.loc(v));
  bool has_count = false;
  for (const auto& e : r_.entries(v, "'random_layers'", {"count", "seed", "from"})) {
    if (e.key == "count") {
      sel.amount = typed(e.value, "'count'", {Value::Kind::kInt});
      has_count = true;
    } else if (e.key == "seed") {
      sel.seed = typed(e.value, "'seed'", {Value::Kind::kInt});
    } else {
      sel.children.push_back(selector(e.value, "'from'"));
    }
  }
  if (v.IsMap() && !has_count) r_.error("missing-key", "'random_layers' needs 'count'", v);
  sel.text = "random_layers(" + flat(v) + ")";
}

// `block_cycle: {blocks: layers|modules|[SEL, ...], layers_per_block, order, seed, start, from,
// embeddings, head}` (docs/RULES.md, "Block cycles"). Literal words are checked here, so that
// `validate` sees them; expressions when the resolver evaluates them.
void SelectorParser::block_cycle_selector(const YAML::Node& v, Selector& sel) {
  sel.kind = Selector::Kind::kBlockCycle;
  sel.text = "block_cycle(" + flat(v) + ")";
  std::optional<YAML::Node> from;  // a handle: the entries do not outlive the loop
  bool listed = false;
  for (const auto& e : r_.entries(v, "'block_cycle'",
                                  {"blocks", "layers_per_block", "order", "seed", "start", "from",
                                   "embeddings", "head"})) {
    if (e.key == "blocks") {
      if (e.value.IsSequence()) {
        listed = true;
        if (e.value.size() == 0) r_.error("bad-value", "'blocks' is an empty list", e.value);
        for (const auto& c : e.value) sel.children.push_back(selector(c, "a block"));
      } else {
        sel.strings = typed(e.value, "'blocks'", {Value::Kind::kString});
        check_word(sel.strings, e.value, "'blocks'", cycle_block_words(),
                   "a list of selectors (one block each)");
      }
    } else if (e.key == "layers_per_block") {
      sel.amount = typed(e.value, "'layers_per_block'", {Value::Kind::kInt});
    } else if (e.key == "order") {
      sel.order = typed(e.value, "'order'", {Value::Kind::kString});
      check_word(sel.order, e.value, "'order'", cycle_order_words(), "");
    } else if (e.key == "seed") {
      sel.seed = typed(e.value, "'seed'", {Value::Kind::kInt});
    } else if (e.key == "start") {
      sel.start = typed(e.value, "'start'", {Value::Kind::kInt, Value::Kind::kNull});
    } else if (e.key == "from") {
      from = e.value;
    } else {
      (e.key == "embeddings" ? sel.embeddings_block : sel.head_block) =
          typed(e.value, "'" + e.key + "'", {Value::Kind::kBool});
    }
  }
  if (from && listed)
    r_.error("misplaced-key",
             "'from' narrows 'blocks: layers' or 'blocks: modules'; listed blocks are selectors "
             "already",
             *from);
  else if (from)
    sel.children.push_back(selector(*from, "'from'"));
  if (!listed && sel.strings.empty())
    sel.strings = Expr::literal(Value::string("layers"), r_.loc(v));
}

// A literal that must be one of `words`: an error with "did you mean" otherwise.
void SelectorParser::check_word(const Expr& e, const YAML::Node& n, const std::string& what,
                                const std::vector<std::string>& words, const std::string& or_else) {
  const Value* lit = e.literal_value();
  if (!lit || lit->kind != Value::Kind::kString) return;
  if (std::find(words.begin(), words.end(), lit->s) != words.end()) return;
  r_.error("bad-value", cycle_word_error(what, lit->s, words, or_else), n,
           cycle_word_notes(what, lit->s));
}

// `experts: [3, 7]`, `experts: "0:8"`, `experts: all`, `experts: {from: FILE}`.
void SelectorParser::experts_selector(const YAML::Node& v, Selector& sel) {
  sel.kind = Selector::Kind::kExperts;
  sel.text = "experts[" + flat(v) + "]";
  if (v.IsMap()) {
    auto es = r_.entries(v, "'experts'", {"from"});
    if (es.empty()) {
      if (v.IsMap()) r_.error("missing-key", "'experts' as a map needs 'from: FILE'", v);
      return;
    }
    sel.from = typed(es[0].value, "'from'", {Value::Kind::kString});
    sel.text = "experts(from " + flat(es[0].value) + ")";
    return;
  }
  if (v.IsScalar() && v.Scalar() == "all") return;
  index_list(v, "expert", "'experts'", sel.experts);
}

// `tokens: [32000, 32001]`, `tokens: "32000:"`; `rows: SLICE` (with `of` beside it).
void SelectorParser::rows_selector(const YAML::Node& v, const std::string& key, Selector& sel) {
  sel.kind = key == "tokens" ? Selector::Kind::kTokens : Selector::Kind::kRows;
  sel.text = key + "[" + flat(v) + "]";
  if (v.IsMap()) {
    r_.error("wrong-type",
             "'" + key + "' takes row indices and slices like \"32000:\", not " + describe(v), v);
    return;
  }
  index_list(v, key == "tokens" ? "token" : "row", "'" + key + "'", sel.rows);
}

// One index or slice, or a non-empty list of them; a literal is checked now.
void SelectorParser::index_list(const YAML::Node& v, const char* noun, const std::string& what,
                                std::vector<Expr>& out) {
  auto one = [&](const YAML::Node& c) {
    const std::string article = noun[0] == 'e' ? "an " : "a ";
    Expr e = expr(c, article + noun + " index");
    if (const Value* lit = e.literal_value();
        lit && lit->kind != Value::Kind::kInt && lit->kind != Value::Kind::kString)
      r_.error(
          "wrong-type",
          article + noun + " index must be an integer or a slice like \"0:8\", not " + describe(c),
          c);
    else
      check_slice(e, c, noun);
    out.push_back(e);
  };
  if (v.IsSequence()) {
    if (v.size() == 0) r_.error("bad-value", what + " is an empty list", v);
    for (const auto& c : v) one(c);
  } else {
    one(v);
  }
}

void SelectorParser::layers(const YAML::Node& v, Selector& sel) {
  if (v.IsMap()) {
    auto es = r_.entries(v, "'layers'", {"first", "last", "first_ratio", "last_ratio"});
    if (es.size() > 1)
      r_.error("selector-conflict", "'layers' takes one of first, last, first_ratio, last_ratio",
               es[1].key_node);
    if (es.empty()) {
      if (v.IsMap()) r_.error("selector-empty", "'layers' map is empty", v);
      return;
    }
    const auto& e = es[0];
    if (e.key == "first" || e.key == "last") {
      sel.layer_form = e.key == "first" ? Selector::LayerForm::kFirst : Selector::LayerForm::kLast;
      sel.amount = typed(e.value, "'" + e.key + "'", {Value::Kind::kInt});
      if (auto* lit = sel.amount.literal_value();
          lit && lit->kind == Value::Kind::kInt && lit->i < 0)
        r_.error("out-of-range",
                 "'" + e.key + "' must not be negative (got " + lit->to_string() + ")", e.value);
    } else {
      sel.layer_form = e.key == "first_ratio" ? Selector::LayerForm::kFirstRatio
                                              : Selector::LayerForm::kLastRatio;
      sel.amount = typed(e.value, "'" + e.key + "'", {Value::Kind::kFloat});
      if (auto* lit = sel.amount.literal_value();
          lit && lit->is_number() && (lit->number() < 0 || lit->number() > 1))
        r_.error("out-of-range", "'" + e.key + "' must be in [0, 1] (got " + lit->to_string() + ")",
                 e.value);
    }
    sel.text = "layers(" + e.key + "=" + flat(e.value) + ")";
    return;
  }
  sel.layer_form = Selector::LayerForm::kIndices;
  if (v.IsSequence()) {
    if (v.size() == 0) r_.error("bad-value", "'layers' is an empty list", v);
    for (const auto& c : v) {
      Expr e = expr(c, "a layer index");
      check_slice(e, c);
      sel.indices.push_back(e);
    }
  } else if (v.IsScalar() && v.Scalar() == "all") {
    sel.indices.push_back(Expr::literal(Value::string(":"), r_.loc(v)));
  } else {
    Expr e = expr(v, "'layers'");
    check_slice(e, v);
    sel.indices.push_back(e);
  }
  sel.text = "layers[" + flat(v) + "]";
}

// A node on one line, scalars as written: `{count: ${n}, seed: 0}`, `[0, -4:]`.
std::string SelectorParser::flat(const YAML::Node& n, int depth) {
  if (depth > kMaxSelectorDepth) return "…";
  if (n.IsScalar()) return n.Scalar();
  std::string out;
  if (n.IsSequence()) {
    for (const auto& c : n) out += (out.empty() ? "" : ", ") + flat(c, depth + 1);
    return "[" + out + "]";
  }
  if (n.IsMap()) {
    for (auto it = n.begin(); it != n.end(); ++it)
      out += (out.empty() ? "" : ", ") + flat(it->first, depth + 1) + ": " +
             flat(it->second, depth + 1);
    return "{" + out + "}";
  }
  return "null";
}
std::string SelectorParser::list_text(const std::vector<Selector>& cs, const std::string& op) {
  std::string t = op + "(";
  for (size_t i = 0; i < cs.size(); ++i) t += (i ? ", " : "") + cs[i].text;
  return t + ")";
}

std::optional<Slice> parse_slice(const std::string& text, std::string* error, const char* noun) {
  const std::string Noun = noun;
  static const RE2 single("\\s*(-?[0-9]+)\\s*");
  static const RE2 slice("\\s*(-?[0-9]+)?\\s*:\\s*(-?[0-9]+)?\\s*(?::\\s*(-?[0-9]+)?\\s*)?");
  Slice s;
  std::string a, b, c;
  auto num = [](const std::string& t) {
    return t.size() > 12 ? std::nullopt : std::optional<int64_t>(std::stoll(t));
  };
  if (RE2::FullMatch(text, single, &a)) {
    s.single = true;
    s.start = num(a);
    if (!s.start) {
      if (error) *error = Noun + " index '" + text + "' is too large";
      return std::nullopt;
    }
    return s;
  }
  if (!RE2::FullMatch(text, slice, &a, &b, &c)) {
    if (error)
      *error = "bad " + Noun + " slice '" + text +
               "': expected an index (3, -1) or a slice (\"0:16\", \"-4:\", \"::2\")";
    return std::nullopt;
  }
  if (a.size() > 12 || b.size() > 12 || c.size() > 12) {
    if (error) *error = Noun + " slice '" + text + "' has an index that is too large";
    return std::nullopt;
  }
  if (!a.empty()) s.start = std::stoll(a);
  if (!b.empty()) s.stop = std::stoll(b);
  if (!c.empty()) s.step = std::stoll(c);
  if (s.step <= 0) {
    if (error) *error = Noun + " slice '" + text + "' needs a positive step";
    return std::nullopt;
  }
  return s;
}

}  // namespace layerfreeze
