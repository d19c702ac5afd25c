#include <algorithm>

#include "sources/family_impl.hpp"

namespace layerfreeze {

using namespace family_detail;
using namespace family_limits;

namespace {

class FamilyParser {
 public:
  FamilyParser(const std::string& file, Diagnostics& diags) : r_(file, diags), diags_(diags) {}

  std::optional<FamilyImpl> parse(const YAML::Node& root) {
    FamilyImpl f;
    f.file = r_.file();
    auto entries = r_.entries(root, "a family file",
                              {"family", "model_types", "architectures", "base_prefix", "config",
                               "tensors", "ties", "ignore", "structure"});
    for (auto& e : entries) {
      if (e.key == "family") {
        if (auto s = r_.string(e.value, "family")) f.name = *s;
      } else if (e.key == "base_prefix") {
        if (auto s = r_.string(e.value, "base_prefix")) f.base_prefix = *s;
      } else if (e.key == "architectures" && e.value.IsMap()) {
        // `Arch: {key: value}`: each architecture with what it sets (a task head, a prefix).
        for (auto& t : r_.entries(e.value, "architectures", {})) {
          f.architectures.push_back(t.key);
          auto& overrides = f.architecture_overrides[t.key];
          if (t.value.IsNull()) continue;
          for (auto& o : r_.entries(t.value, "architecture '" + t.key + "'", {}))
            if (auto v = r_.value(o.value, o.key)) overrides[o.key] = *v;
        }
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
      if ((e.key != "model_types" && e.key != "architectures") || !e.value.IsMap()) continue;
      for (auto it = e.value.begin(); it != e.value.end(); ++it) {
        if (!it->second.IsMap()) continue;
        for (auto o = it->second.begin(); o != it->second.end(); ++o) {
          const std::string k = o->first.Scalar();
          if (std::find(known_.begin(), known_.end(), k) == known_.end())
            r_.error("family-format",
                     (e.key == "model_types" ? "model type '" : "architecture '") +
                         it->first.Scalar() + "' sets '" + k +
                         "', which `config` does not declare" + did_you_mean(k, known_),
                     o->first);
        }
      }
    }
    for (auto& e : entries) {
      if (e.key == "tensors") f.items = items(e.value);
      if (e.key == "ties") ties(e.value, f);
      if (e.key == "ignore") ignores(e.value, f);
      if (e.key == "structure") read_discovery_block(r_, e.value, f.structure, nullptr);
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
      } else if (n.IsMap() && n["family"]) {
        it.part = part(n);
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

  std::shared_ptr<PartDecl> part(const YAML::Node& n) {
    auto p = std::make_shared<PartDecl>();
    p->loc = r_.loc(n);
    for (auto& e : r_.entries(n, "a part", {"family", "config", "prefix", "if", "rename", "set"})) {
      if (e.key == "set")
        for (auto& kv : r_.entries(e.value, "`set`", {}))
          p->sets.emplace_back(kv.key, expr(kv.value, "a value", true));
      if (e.key == "rename") {
        auto v = r_.value(e.value, "rename");
        if (!v || v->kind != Value::Kind::kList || v->list.size() != 2 ||
            v->list[0].kind != Value::Kind::kString || v->list[1].kind != Value::Kind::kString) {
          r_.error("family-format", "`rename` is [FROM, TO]: two strings", e.value);
        } else {
          p->renames = true;
          p->rename_from = v->list[0].s;
          p->rename_to = v->list[1].s;
        }
      }
      if (e.key == "family") p->family = r_.string(e.value, "family").value_or("");
      if (e.key == "config") p->section = r_.string(e.value, "config").value_or("");
      if (e.key == "prefix") p->prefix = expr(e.value, "a prefix", false);
      if (e.key == "if") p->cond = expr(e.value, "a condition", true);
    }
    if (p->family.empty()) r_.error("family-format", "a part needs `family: NAME`", n);
    return p;
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

  friend std::optional<FamilyImpl> layerfreeze::parse_family(const YAML::Node&, const std::string&,
                                                             Diagnostics&);
  std::set<std::string> loop_vars_;
};

}  // namespace

std::optional<FamilyImpl> parse_family(const YAML::Node& root, const std::string& file,
                                       Diagnostics& diags) {
  FamilyParser parser(file, diags);
  auto impl = parser.parse(root);
  if (impl) impl->loop_vars = parser.loop_vars_;
  return impl;
}

}  // namespace layerfreeze
