#include "sources/family.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "core/embedded_rules.hpp"
#include "core/facts_builder.hpp"
#include "core/yaml_reader.hpp"
#include "sources/family_impl.hpp"

namespace layerfreeze {

using namespace family_detail;
using namespace family_limits;

namespace {

// ---- Expanding -------------------------------------------------------------------------------

// How deep parts may nest (a composite of composites); a family that includes itself stops here.
constexpr int kMaxPartDepth = 4;
thread_local int part_depth = 0;

class Expander {
 public:
  Expander(const FamilyImpl& f, const ModelConfig& c, Diagnostics& diags)
      : f_(f), c_(c), diags_(diags) {}

  std::optional<FamilyModel> run() {
    if (!bind()) return std::nullopt;
    FamilyModel m;
    m.family = f_.name;
    m.base_prefix = f_.base_prefix;
    m.structure = structure_hints(f_.structure);
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
    FactsBuilder build(m.inv);
    build.append(std::move(params_));
    if (m.inv.indexed_names() !=
        m.inv.tensors().size()) {  // the index keeps the first of a repeated name
      std::set<std::string> seen;
      for (const auto& p : m.inv.tensors())
        if (!seen.insert(p.name).second) {
          diags_.error(
              "family-format",
              "family " + f_.name + " names '" + p.name + "' twice (with config '" + c_.path + "')",
              {f_.file, 0, 0});
          return std::nullopt;
        }
    }
    for (auto& g : part_ignored_) m.ignored.push_back(std::move(g));
    for (const auto& t : part_ties_) {
      if (!m.inv.contains(t.canonical) || m.inv.contains(t.alias)) continue;
      build.add_alias(t.canonical, t.alias);
      m.ties.push_back(t);
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
      build.add_alias(*k, *a);
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
    const auto* arch = [&]() -> const std::map<std::string, Value>* {
      auto it = f_.architecture_overrides.find(c_.architecture);
      return it == f_.architecture_overrides.end() ? nullptr : &it->second;
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
      if (arch) {  // the architecture's, over the model type's
        auto o = arch->find(k.key);
        if (o != arch->end()) {
          scope_[k.key] = o->second;
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
      // Every step counts, not only tensors made: nested repeats whose tensors are all
      // conditioned out would otherwise loop 10^15 times.
      if (++steps_ > kMaxExpansionSteps) {
        fail(it.block ? it.block->loc : it.tensor.loc,
             "the family expands in more than " + std::to_string(kMaxExpansionSteps) +
                 " steps (repeats times what they hold, tensors conditioned out included)");
        return false;
      }
      if (it.part) {
        if (!expand_part(*it.part, prefix)) return false;
        continue;
      }
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
      Tensor p;
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

  // A part: the named family's tensors for one section of the config, under a prefix.
  bool expand_part(const PartDecl& part, const std::string& prefix) {
    if (!part.cond.empty() && !truth(part.cond)) return !failed_;
    auto cached = parts_.find(&part);
    if (cached == parts_.end()) {
      const Family* fam = nullptr;
      for (const auto& f : shipped_families())
        if (f.name() == part.family) fam = &f;
      if (!fam) {
        fail(part.loc, "family " + f_.name + " includes family '" + part.family +
                           "', which is not a shipped family");
        failed_ = true;
        return false;
      }
      if (part_depth >= kMaxPartDepth) {
        fail(part.loc, "families include each other more than " + std::to_string(kMaxPartDepth) +
                           " deep (a family including itself?)");
        failed_ = true;
        return false;
      }
      ModelConfig sub;
      sub.path = c_.path;
      sub.dtype = c_.dtype;
      sub.quantization = c_.quantization;
      const std::string head = part.section.empty() ? "" : part.section + ".";
      for (auto kv = c_.values.lower_bound(head); kv != c_.values.end(); ++kv) {
        if (kv->first.compare(0, head.size(), head) != 0) break;
        sub.values[kv->first.substr(head.size())] = kv->second;
      }
      for (const auto& [key, e] : part.sets) {
        const Value* v = value(e);
        if (!v) return false;
        sub.values[key] = *v;
      }
      if (const Value* t = sub.get("model_type"); t && t->kind == Value::Kind::kString)
        sub.model_type = t->s;
      ++part_depth;
      auto model = fam->expand(sub, diags_);
      --part_depth;
      if (!model) {
        failed_ = true;
        return false;
      }
      cached = parts_.emplace(&part, std::move(*model)).first;
    }
    const FamilyModel& m = cached->second;
    steps_ += m.inv.tensors().size();
    if (counting_) {
      count_ += m.inv.tensors().size();
      if (count_ > kMaxTensors) {
        fail(part.loc, "config implies more than " + std::to_string(kMaxTensors) + " tensors");
        return false;
      }
      return true;
    }
    auto p = part.prefix.empty() ? std::optional<std::string>("") : text(part.prefix);
    if (!p) return false;
    const std::string at = prefix + *p;
    auto named = [&](const std::string& n) {
      if (part.renames && n.compare(0, part.rename_from.size(), part.rename_from) == 0)
        return at + part.rename_to + n.substr(part.rename_from.size());
      return at + n;
    };
    for (const auto& q : m.inv.tensors()) {
      Tensor copy = q;
      copy.name = named(q.name);
      copy.aliases.clear();
      params_.push_back(std::move(copy));
    }
    for (const auto& t : m.ties)
      part_ties_.push_back({named(t.alias), named(t.canonical), t.by_config});
    for (const auto& [pre, kind] : m.ignored) part_ignored_.emplace_back(named(pre), kind);
    return !failed_;
  }

  const FamilyImpl& f_;
  const ModelConfig& c_;
  Diagnostics& diags_;
  std::map<const PartDecl*, FamilyModel> parts_;  // each part expanded once (both passes)
  std::vector<Tie> part_ties_;                    // the parts' ties, under their prefixes
  std::vector<std::pair<std::string, std::string>> part_ignored_;
  Scope scope_;
  std::unordered_map<const Expr*, std::optional<Value>> cache_;
  Value scratch_;
  bool counting_ = false;
  size_t count_ = 0;
  size_t steps_ = 0;  // both passes together
  std::string dtype_;
  std::vector<Tensor> params_;  // the tensors, indexed in one pass at the end
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
  auto impl = parse_family(root, file, local);
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
