#include "sources/family.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "core/embedded_rules.hpp"
#include "core/yaml_reader.hpp"

namespace layerfreeze {

namespace {
constexpr int64_t kMaxRepeat = 100000;
constexpr int64_t kMaxDim = int64_t{1} << 40;
constexpr int64_t kMaxNumel = int64_t{1} << 52;
constexpr size_t kMaxTensors = 1000000;  // ten times the largest inventories known (~100k)
constexpr int kMaxNesting = 64;
constexpr size_t kMaxDeclarations = 100000;  // tensors and groups a family file declares

}  // namespace

// The parsed form of a family file (named, so FamilyImpl may hold it).
namespace family_detail {

struct TensorDecl {
  Expr name;
  std::vector<Expr> shape;
  Expr type;  // a module type, may be a template (`${norm}`)
  std::string dtype;
  Expr cond;
  SourceLoc loc;
};

struct Block;
struct Item {
  std::shared_ptr<Block> block;  // a group or a repeat; else `tensor`
  TensorDecl tensor;
};

struct Block {
  std::string var;  // the repeat's index name; "" for a plain group
  Expr repeat;      // empty for a plain group
  Expr prefix;      // prepended to the names inside
  Expr cond;
  std::vector<Item> items;
  SourceLoc loc;
};

struct TieDecl {
  Expr alias, canonical, cond;
};

// Checkpoint tensors under a prefix that the model class does not load (DeepSeek-V3's
// multi-token-prediction layer): not parameters of the model.
struct IgnoreDecl {
  Expr prefix, cond;
  std::string kind;
};

struct ConfigKey {
  std::string key;
  Value fallback;  // null: required
  Expr expr;       // a `${...}` default
  SourceLoc loc;
};

}  // namespace family_detail

using namespace family_detail;

struct FamilyImpl {
  std::string name, file, base_prefix;
  std::map<std::string, std::map<std::string, Value>> model_types;  // type -> overrides
  std::vector<std::string> architectures;
  std::vector<ConfigKey> keys;
  std::vector<Item> items;
  std::vector<TieDecl> ties;
  std::vector<IgnoreDecl> ignores;
  std::set<std::string> loop_vars;  // the names `as:` binds
};

namespace {

// ---- Parsing ---------------------------------------------------------------------------------

class FamilyParser {
 public:
  FamilyParser(const std::string& file, Diagnostics& diags) : r_(file, diags), diags_(diags) {}

  std::optional<FamilyImpl> parse(const YAML::Node& root) {
    FamilyImpl f;
    f.file = r_.file();
    auto entries = r_.entries(root, "a family file",
                              {"family", "model_types", "architectures", "base_prefix", "config",
                               "tensors", "ties", "ignore"});
    for (auto& e : entries) {
      if (e.key == "family") {
        if (auto s = r_.string(e.value, "family")) f.name = *s;
      } else if (e.key == "base_prefix") {
        if (auto s = r_.string(e.value, "base_prefix")) f.base_prefix = *s;
      } else if (e.key == "architectures") {
        if (auto v = r_.value(e.value, "architectures"))
          for (const auto& x : v->list) f.architectures.push_back(x.s);
      } else if (e.key == "model_types") {
        for (auto& t : r_.entries(e.value, "model_types", {})) {
          auto& overrides = f.model_types[t.key];
          if (t.value.IsNull()) continue;
          for (auto& o : r_.entries(t.value, "model type '" + t.key + "'", {}))
            if (auto v = r_.value(o.value, o.key)) overrides[o.key] = *v;
        }
      } else if (e.key == "config") {
        for (auto& k : r_.entries(e.value, "config", {})) {
          ConfigKey c;
          c.key = k.key;
          c.loc = r_.loc(k.value);
          auto v = r_.value(k.value, k.key);
          if (v && v->kind == Value::Kind::kString && v->s.find("${") != std::string::npos)
            c.expr = Expr::parse(v->s, c.loc, known_, diags_);
          else if (v)
            c.fallback = *v;
          known_.push_back(c.key);
          f.keys.push_back(std::move(c));
        }
      }
    }
    // A model type sets family variables; each must be declared (with its default) in `config`.
    for (auto& e : entries) {
      if (e.key != "model_types" || !e.value.IsMap()) continue;
      for (auto it = e.value.begin(); it != e.value.end(); ++it) {
        if (!it->second.IsMap()) continue;
        for (auto o = it->second.begin(); o != it->second.end(); ++o) {
          const std::string k = o->first.Scalar();
          if (std::find(known_.begin(), known_.end(), k) == known_.end())
            r_.error("family-format",
                     "model type '" + it->first.Scalar() + "' sets '" + k +
                         "', which `config` does not declare" + did_you_mean(k, known_),
                     o->first);
        }
      }
    }
    for (auto& e : entries) {
      if (e.key == "tensors") f.items = items(e.value);
      if (e.key == "ties") ties(e.value, f);
      if (e.key == "ignore") ignores(e.value, f);
    }
    if (f.name.empty()) r_.error("family-format", "a family file needs `family: NAME`", root);
    if (f.model_types.empty() && f.architectures.empty())
      r_.error("family-format", "a family file needs `model_types` or `architectures`", root);
    if (diags_.has_errors()) return std::nullopt;
    return f;
  }

 private:
  Expr expr(const YAML::Node& n, const std::string& what, bool bare) {
    if (!n.IsScalar()) {
      r_.error("family-format", what + " must be a scalar, not " + describe(n), n);
      return {};
    }
    std::string t = n.Scalar();
    if (!bare && t.find("${") == std::string::npos)
      return Expr::literal(Value::string(t), r_.loc(n));
    if (bare && t.find("${") == std::string::npos) {
      Value lit = typed_scalar(t, n.Tag() == "!");
      if (lit.kind == Value::Kind::kInt) return Expr::literal(lit, r_.loc(n));
      t = "${" + t + "}";
    }
    return Expr::parse(t, r_.loc(n), known_, diags_);
  }

  std::vector<Item> items(const YAML::Node& list) {
    std::vector<Item> out;
    if (!list.IsSequence()) {
      r_.error("family-format", "`tensors` must be a list, not " + describe(list), list);
      return out;
    }
    for (const auto& n : list) {
      // YAML aliases can repeat a list inside itself many times over (a "billion laughs").
      if (++declarations_ > kMaxDeclarations) {
        if (declarations_ == kMaxDeclarations + 1)
          r_.error("too-large",
                   "the family file declares more than " + std::to_string(kMaxDeclarations) +
                       " tensors and groups (YAML aliases?)",
                   n);
        return out;
      }
      Item it;
      if (n.IsSequence()) {
        it.tensor = tensor_list(n);
      } else if (n.IsMap() && n["tensors"]) {
        it.block = block(n);
      } else if (n.IsMap()) {
        it.tensor = tensor_map(n);
      } else {
        r_.error("family-format",
                 "a tensor is [name, shape, type, condition?] or a map, not " + describe(n), n);
        continue;
      }
      out.push_back(std::move(it));
    }
    return out;
  }

  std::vector<Expr> shape(const YAML::Node& n) {
    std::vector<Expr> out;
    if (!n.IsSequence()) {
      r_.error("family-format", "a shape must be a list of sizes, not " + describe(n), n);
      return out;
    }
    for (const auto& d : n) out.push_back(expr(d, "a size", true));
    return out;
  }

  TensorDecl tensor_list(const YAML::Node& n) {
    TensorDecl t;
    t.loc = r_.loc(n);
    if (n.size() < 3 || n.size() > 4) {
      r_.error("family-format",
               "a tensor is [name, shape, module type] or [name, shape, module type, condition]",
               n);
      return t;
    }
    t.name = expr(n[0], "a tensor name", false);
    t.shape = shape(n[1]);
    t.type = expr(n[2], "a module type", false);
    if (n.size() == 4) t.cond = expr(n[3], "a condition", true);
    return t;
  }

  TensorDecl tensor_map(const YAML::Node& n) {
    TensorDecl t;
    t.loc = r_.loc(n);
    for (auto& e : r_.entries(n, "a tensor", {"name", "shape", "type", "if", "dtype"})) {
      if (e.key == "name") t.name = expr(e.value, "a tensor name", false);
      if (e.key == "shape") t.shape = shape(e.value);
      if (e.key == "type") t.type = expr(e.value, "a module type", false);
      if (e.key == "if") t.cond = expr(e.value, "a condition", true);
      if (e.key == "dtype") t.dtype = r_.string(e.value, "dtype").value_or("");
    }
    if (t.name.empty()) r_.error("family-format", "a tensor needs a `name`", n);
    return t;
  }

  std::shared_ptr<Block> block(const YAML::Node& n) {
    auto b = std::make_shared<Block>();
    b->loc = r_.loc(n);
    auto es = r_.entries(n, "a group of tensors", {"repeat", "as", "prefix", "if", "tensors"});
    for (auto& e : es)
      if (e.key == "as") b->var = r_.string(e.value, "as").value_or("");
    for (auto& e : es)
      if (e.key == "repeat") b->repeat = expr(e.value, "a repeat count", true);
    if (!b->repeat.empty() && b->var.empty())
      r_.error("family-format", "a repeat needs `as: NAME` for its index", n);
    if (b->repeat.empty() && !b->var.empty()) r_.error("family-format", "`as` needs a `repeat`", n);
    if (!b->var.empty()) {
      known_.push_back(b->var);
      loop_vars_.insert(b->var);
    }
    for (auto& e : es) {
      if (e.key == "prefix") b->prefix = expr(e.value, "a prefix", false);
      if (e.key == "if") b->cond = expr(e.value, "a condition", true);
      if (e.key == "tensors") b->items = items(e.value);
    }
    if (!b->var.empty()) known_.pop_back();
    return b;
  }

  void ties(const YAML::Node& list, FamilyImpl& f) {
    if (!list.IsSequence()) {
      r_.error("family-format", "`ties` must be a list, not " + describe(list), list);
      return;
    }
    for (const auto& n : list) {
      TieDecl t;
      for (auto& e : r_.entries(n, "a tie", {"alias", "of", "if"})) {
        if (e.key == "alias") t.alias = expr(e.value, "an alias", false);
        if (e.key == "of") t.canonical = expr(e.value, "a tensor name", false);
        if (e.key == "if") t.cond = expr(e.value, "a condition", true);
      }
      if (t.alias.empty() || t.canonical.empty())
        r_.error("family-format", "a tie needs `alias` and `of`", n);
      f.ties.push_back(std::move(t));
    }
  }

  void ignores(const YAML::Node& list, FamilyImpl& f) {
    if (!list.IsSequence()) {
      r_.error("family-format", "`ignore` must be a list, not " + describe(list), list);
      return;
    }
    for (const auto& n : list) {
      IgnoreDecl g;
      for (auto& e : r_.entries(n, "an ignore entry", {"prefix", "if", "kind"})) {
        if (e.key == "prefix") g.prefix = expr(e.value, "a prefix", false);
        if (e.key == "if") g.cond = expr(e.value, "a condition", true);
        if (e.key == "kind") g.kind = r_.string(e.value, "kind").value_or("");
      }
      if (g.prefix.empty() || g.kind.empty())
        r_.error("family-format", "an ignore entry needs `prefix` and `kind`", n);
      f.ignores.push_back(std::move(g));
    }
  }

  YamlReader r_;
  Diagnostics& diags_;
  std::vector<std::string> known_;
  size_t declarations_ = 0;

 public:
  std::set<std::string> loop_vars_;
};

// ---- Expanding -------------------------------------------------------------------------------

class Expander {
 public:
  Expander(const FamilyImpl& f, const ModelConfig& c, Diagnostics& diags)
      : f_(f), c_(c), diags_(diags) {}

  std::optional<FamilyModel> run() {
    if (!bind()) return std::nullopt;
    FamilyModel m;
    m.family = f_.name;
    m.base_prefix = f_.base_prefix;
    m.inv.source = c_.path;
    m.inv.model_type = !c_.architecture.empty() ? c_.architecture : c_.model_type;
    dtype_ = c_.dtype.empty() ? "float32" : c_.dtype;
    if (dtype_bytes(dtype_) == 0) dtype_ = "float32";
    // A first pass counts the tensors (conditions and repeats only, no names): the inventory is
    // allocated once, and a config that implies millions of tensors stops before building them.
    counting_ = true;
    if (!expand(f_.items, "")) return std::nullopt;
    counting_ = false;
    params_.reserve(count_);
    if (!expand(f_.items, "")) return std::nullopt;
    m.inv.append(std::move(params_));
    if (m.inv.indexed_names() !=
        m.inv.params.size()) {  // the index keeps the first of a repeated name
      std::set<std::string> seen;
      for (const auto& p : m.inv.params)
        if (!seen.insert(p.name).second) {
          diags_.error(
              "family-format",
              "family " + f_.name + " names '" + p.name + "' twice (with config '" + c_.path + "')",
              {f_.file, 0, 0});
          return std::nullopt;
        }
    }
    for (const auto& g : f_.ignores) {
      if (!g.cond.empty() && !truth(g.cond)) {
        if (failed_) return std::nullopt;
        continue;
      }
      auto prefix = text(g.prefix);
      if (!prefix) return std::nullopt;
      m.ignored.push_back({*prefix, g.kind});
    }
    for (const auto& t : f_.ties) {
      if (!t.cond.empty() && !truth(t.cond)) {
        if (failed_) return std::nullopt;
        continue;
      }
      auto a = text(t.alias), k = text(t.canonical);
      if (!a || !k) return std::nullopt;
      if (m.inv.contains(*a)) {
        fail(t.alias.loc(), "tie alias '" + *a + "' is also a tensor of its own");
        return std::nullopt;
      }
      if (!m.inv.contains(*k)) continue;
      m.inv.add_alias(*k, *a);
      m.ties.push_back({*a, *k, !t.cond.empty()});
    }
    return m;
  }

 private:
  void fail(const SourceLoc& at, const std::string& msg) {
    diags_.error("config-value", "config '" + c_.path + "': " + msg, at,
                 {"the expression is family " + f_.name + "'s; the values are the config's"});
  }

  // Config values over the model type's overrides over the family's defaults.
  bool bind() {
    const auto* overrides = [&]() -> const std::map<std::string, Value>* {
      auto it = f_.model_types.find(c_.model_type);
      return it == f_.model_types.end() ? nullptr : &it->second;
    }();
    bool ok = true;
    for (const auto& k : f_.keys) {
      // A null in the config means "the class's default" where the default is computed
      // (`num_key_value_heads: null`), and None where the default is a value (`q_lora_rank`).
      if (const Value* v = c_.get(k.key)) {
        if (!v->is_null() || (k.expr.empty() && !k.fallback.is_null())) {
          scope_[k.key] = *v;
          continue;
        }
      }
      if (overrides) {
        auto o = overrides->find(k.key);
        if (o != overrides->end()) {
          scope_[k.key] = o->second;
          continue;
        }
      }
      if (!k.expr.empty()) {
        Diagnostics local;
        auto v = k.expr.eval(scope_, local);
        if (!v) {
          for (const auto& d : local.items())
            fail(d.loc, "the default of '" + k.key + "': " + d.message);
          ok = false;
          continue;
        }
        scope_[k.key] = *v;
      } else if (!k.fallback.is_null()) {
        scope_[k.key] = k.fallback;
      } else {
        diags_.error(
            "config-missing",
            "config '" + c_.path + "' has no '" + k.key + "', which family " + f_.name + " needs",
            {c_.path, 0, 0}, {"declared at " + f_.file + ":" + std::to_string(k.loc.line)});
        ok = false;
      }
    }
    return ok;
  }

  // Evaluates `e`; a value that reads no loop index is the same for every tensor of the
  // expansion and is computed once (DeepSeek-V3: 45k tensors, a few hundred distinct sizes).
  // The pointer is valid until the next call.
  const Value* value(const Expr& e) {
    if (const Value* lit = e.literal_value()) return lit;
    auto it = cache_.find(&e);
    if (it != cache_.end() && it->second) return &*it->second;
    Diagnostics local;
    auto v = e.eval(scope_, local);
    if (!v) {  // a division by zero, an overflow, a type the config got wrong: the config's doing
      for (const auto& d : local.items()) fail(d.loc, d.message);
      failed_ = true;
      return nullptr;
    }
    if (it == cache_.end()) {
      bool invariant = true;
      for (const auto& n : e.names()) invariant = invariant && !f_.loop_vars.count(n);
      it = cache_.emplace(&e, invariant ? v : std::nullopt).first;
      if (it->second) return &*it->second;
    }
    scratch_ = std::move(*v);
    return &scratch_;
  }

  // Appends the text of `e` to `out`.
  bool append_text(const Expr& e, std::string& out) {
    const Value* v = value(e);
    if (!v) return false;
    if (v->kind == Value::Kind::kString)
      out += v->s;
    else
      out += v->to_string();
    return true;
  }

  std::optional<std::string> text(const Expr& e) {
    std::string out;
    if (!append_text(e, out)) return std::nullopt;
    return out;
  }

  bool truth(const Expr& e) {
    const Value* v = value(e);
    if (!v) {
      failed_ = true;
      return false;
    }
    switch (v->kind) {
      case Value::Kind::kBool: return v->b;
      case Value::Kind::kInt: return v->i != 0;
      case Value::Kind::kFloat: return v->f != 0;
      case Value::Kind::kString: return !v->s.empty();
      case Value::Kind::kList: return !v->list.empty();
      default: return false;
    }
  }

  // An expression as the family file writes it (sizes and counts without the `${}` wrapper).
  static std::string shown(const Expr& e) {
    const std::string& t = e.text();
    if (t.size() > 3 && t.rfind("${", 0) == 0 && t.back() == '}' &&
        t.find("${", 2) == std::string::npos)
      return t.substr(2, t.size() - 3);
    return t;
  }

  // `what` and `of` make the message ("size of 'x.weight'"); built only when it is needed.
  std::optional<int64_t> size(const Expr& e, const char* what, const std::string& of, int64_t lo,
                              int64_t hi) {
    const Value* v = value(e);
    if (!v) return std::nullopt;
    if (v->kind == Value::Kind::kInt && v->i >= lo && v->i <= hi) return v->i;
    return size_error(e, what + (of.empty() ? std::string() : " of '" + of + "'"), v, lo, hi);
  }

  std::optional<int64_t> size_error(const Expr& e, const std::string& what, const Value* v,
                                    int64_t lo, int64_t hi) {
    if (v->kind != Value::Kind::kInt) {
      fail(e.loc(), what + " '" + shown(e) + "' is " + v->to_string() + ", not a whole number");
      return std::nullopt;
    }
    if (v->i < lo || v->i > hi) {
      fail(e.loc(), what + " '" + shown(e) + "' is " + std::to_string(v->i) +
                        "; it must be between " + std::to_string(lo) + " and " +
                        std::to_string(hi));
      return std::nullopt;
    }
    return v->i;
  }

  bool expand(const std::vector<Item>& items, const std::string& prefix) {
    for (const auto& it : items) {
      if (failed_) return false;
      if (it.block) {
        const Block& b = *it.block;
        if (!b.cond.empty() && !truth(b.cond)) {
          if (failed_) return false;
          continue;
        }
        if (b.repeat.empty()) {
          auto p = b.prefix.empty() || counting_ ? std::optional<std::string>("") : text(b.prefix);
          if (!p || !expand(b.items, prefix + *p)) return false;
          continue;
        }
        auto n = size(b.repeat, "repeat count", "", 1, kMaxRepeat);
        if (!n) return false;
        for (int64_t k = 0; k < *n; ++k) {
          scope_[b.var] = Value::integer(k);
          auto p = b.prefix.empty() || counting_ ? std::optional<std::string>("") : text(b.prefix);
          if (!p || !expand(b.items, prefix + *p)) return false;
        }
        scope_.erase(b.var);
        continue;
      }
      const TensorDecl& t = it.tensor;
      if (!t.cond.empty() && !truth(t.cond)) {
        if (failed_) return false;
        continue;
      }
      if (counting_) {
        if (++count_ > kMaxTensors) {
          fail(t.loc, "config implies more than " + std::to_string(kMaxTensors) + " tensors");
          return false;
        }
        continue;
      }
      Param p;
      p.name.reserve(prefix.size() + 32);
      p.name = prefix;
      if (!append_text(t.name, p.name)) return false;
      p.numel = 1;
      p.shape.reserve(t.shape.size());
      for (const auto& d : t.shape) {
        auto v = size(d, "size", p.name, 1, kMaxDim);
        if (!v) return false;
        if (p.numel > kMaxNumel / *v) {
          fail(d.loc(), "tensor '" + p.name + "' would have more than 2^52 elements");
          return false;
        }
        p.numel *= *v;
        p.shape.push_back(*v);
      }
      p.dtype = t.dtype.empty() ? dtype_ : t.dtype;
      if (!t.type.empty() && !append_text(t.type, p.module_type)) return false;
      if (params_.size() >= kMaxTensors) {
        fail(t.loc, "config implies more than " + std::to_string(kMaxTensors) + " tensors");
        return false;
      }
      params_.push_back(std::move(p));
    }
    return !failed_;
  }

  const FamilyImpl& f_;
  const ModelConfig& c_;
  Diagnostics& diags_;
  Scope scope_;
  std::unordered_map<const Expr*, std::optional<Value>> cache_;
  Value scratch_;
  bool counting_ = false;
  size_t count_ = 0;
  std::string dtype_;
  std::vector<Param> params_;  // the tensors, indexed in one pass at the end
  bool failed_ = false;
};

}  // namespace

Family::Family() : impl_(std::make_unique<FamilyImpl>()) {}
Family::~Family() = default;
Family::Family(Family&&) noexcept = default;
Family& Family::operator=(Family&&) noexcept = default;

const std::string& Family::name() const { return impl_->name; }
const std::string& Family::file() const { return impl_->file; }

std::vector<std::string> Family::model_types() const {
  std::vector<std::string> out;
  for (const auto& [t, _] : impl_->model_types) out.push_back(t);
  return out;
}

const std::vector<std::string>& Family::architectures() const { return impl_->architectures; }

bool Family::covers(const std::string& model_type, const std::string& architecture) const {
  if (!model_type.empty()) return impl_->model_types.count(model_type) > 0;
  return std::find(impl_->architectures.begin(), impl_->architectures.end(), architecture) !=
         impl_->architectures.end();
}

std::optional<FamilyModel> Family::expand(const ModelConfig& config, Diagnostics& diags) const {
  return Expander(*impl_, config, diags).run();
}

std::optional<Family> Family::parse(const std::string& text, const std::string& file,
                                    Diagnostics& diags) {
  auto loaded = load_yaml(text, file, "the family file", kMaxNesting, diags);
  if (!loaded) return std::nullopt;
  YAML::Node root = *loaded;
  Diagnostics local;
  FamilyParser parser(file, local);
  auto impl = parser.parse(root);
  if (impl) impl->loop_vars = parser.loop_vars_;
  diags.append(local);
  if (!impl) return std::nullopt;
  Family f;
  *f.impl_ = std::move(*impl);
  return f;
}

namespace {

// The shipped family files, each parsed on first use: a process that plans one model parses one
// family file (YAML parsing is the largest cost of a config-only plan).
struct ShippedFamily {
  std::string file, text;
  std::optional<Family> parsed;
  bool tried = false;
};

std::vector<ShippedFamily>& shipped_files() {
  static std::vector<ShippedFamily> files = [] {
    std::vector<ShippedFamily> out;
    for (const auto& e : embedded_rule_files()) {
      std::string name = e.name;
      if (name.rfind("families/", 0) == 0)
        out.push_back({"rules/" + name, e.text, std::nullopt, false});
    }
    return out;
  }();
  return files;
}

const Family* parsed(ShippedFamily& f) {
  if (!f.tried) {
    f.tried = true;
    Diagnostics d;
    f.parsed = Family::parse(f.text, f.file, d);
    // Shipped files are tested; a broken one is a build defect, reported loudly.
    if (!f.parsed) throw DiagnosticError(d);
  }
  return &*f.parsed;
}

}  // namespace

const std::vector<Family>& shipped_families() {
  static const std::vector<Family> families = [] {
    std::vector<Family> out;
    for (auto& f : shipped_files()) {
      Diagnostics d;
      auto fam = Family::parse(f.text, f.file, d);
      if (!fam) throw DiagnosticError(d);
      out.push_back(std::move(*fam));
    }
    return out;
  }();
  return families;
}

const Family* find_family(const ModelConfig& config) {
  // A file that mentions the model type or the architecture is parsed and asked; the others
  // are not parsed at all.
  for (const std::string* key : {&config.model_type, &config.architecture}) {
    if (key->empty()) continue;
    for (auto& f : shipped_files()) {
      if (f.text.find(*key) == std::string::npos) continue;
      const Family* fam = parsed(f);
      if (key == &config.model_type ? fam->covers(*key, "") : fam->covers("", *key)) return fam;
    }
  }
  return nullptr;
}

std::vector<std::string> known_model_types() {
  std::vector<std::string> out;
  for (const auto& f : shipped_families())
    for (auto& t : f.model_types()) out.push_back(t);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace layerfreeze
