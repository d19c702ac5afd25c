#include "core/rules_parser.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/embedded_rules.hpp"
#include "core/format.hpp"
#include "core/metric_triggers.hpp"
#include "core/selector_parser.hpp"
#include "core/yaml_reader.hpp"

namespace layerfreeze {

namespace {

constexpr size_t kMaxRules = 10000;
constexpr size_t kMaxStages = 10000;
constexpr int64_t kMaxTime = int64_t{1} << 40;  // epochs or steps; larger is a mistake

// Parses one strategy file body (after `extends` is resolved by the loader).
struct FileParser {
  FileParser(YamlReader& r, StrategyDef& s) : r_(r), s_(s), sel_(r, s) {}

  Expr typed(const YAML::Node& n, const std::string& what,
             std::initializer_list<Value::Kind> kinds) {
    return sel_.typed(n, what, kinds);
  }
  Selector selector(const YAML::Node& n, const std::string& what) { return sel_.selector(n, what); }

  Rule rule(const YAML::Node& n) {
    Rule r;
    r.loc = r_.loc(n);
    auto es = r_.entries(n, "a rule", {"freeze", "unfreeze", "when"});
    const YamlReader::Entry* act = nullptr;
    for (const auto& e : es) {
      if (e.key == "when") {
        r.when = typed(e.value, "'when'", {Value::Kind::kBool});
      } else if (act) {
        r_.error("rule-conflict", "a rule either freezes or unfreezes, not both", e.key_node);
      } else {
        act = &e;
      }
    }
    if (!act) {
      // An unknown key already explains a missing action ("unfreze"): one error, not two.
      if (n.IsMap() && es.size() == n.size())
        r_.error("missing-key", "a rule needs 'freeze' or 'unfreeze'", n);
      return r;
    }
    r.action = act->key == "freeze" ? Action::kFreeze : Action::kUnfreeze;
    r.selector = selector(act->value, "the selector of '" + act->key + "'");
    r.loc = r_.loc(act->key_node);
    r.text = act->key + " " + r.selector.text;
    return r;
  }

  std::vector<Rule> rules(const YAML::Node& n, const std::string& what) {
    std::vector<Rule> out;
    if (!n.IsSequence()) {
      r_.error("wrong-type", what + " must be a list of rules, not " + describe(n), n);
      return out;
    }
    for (const auto& c : n) out.push_back(rule(c));
    return out;
  }

  // `metric_ok`: the trigger may be a metric's plateau (an `at` or a progressive `every`).
  Trigger trigger(const YAML::Node& n, const std::string& what, bool plural,
                  bool metric_ok = false) {
    Trigger t;
    t.loc = r_.loc(n);
    std::string e_key = plural ? "epochs" : "epoch", s_key = plural ? "steps" : "step";
    if (n.IsMap() && n["plateau"]) {
      if (!metric_ok) {
        r_.error("bad-trigger",
                 what +
                     " counts epochs or steps; only 'at' and a progressive stage's 'every' "
                     "may wait for a metric's plateau",
                 n["plateau"]);
        return t;
      }
      t.metric = metric_trigger(n, what);
      return t;
    }
    std::vector<std::string> allowed{e_key, s_key};
    if (metric_ok) allowed.push_back("plateau");
    auto es = r_.entries(n, what, allowed);
    if (es.size() != 1) {
      if (n.IsMap())
        r_.error("bad-trigger",
                 what + " takes exactly one of '" + e_key + "' or '" + s_key + "'" +
                     (metric_ok && es.empty() ? " (a time), or 'plateau' (a metric)" : ""),
                 n);
      return t;
    }
    t.unit = es[0].key == e_key ? Trigger::Unit::kEpoch : Trigger::Unit::kStep;
    t.value = typed(es[0].value, "'" + es[0].key + "'", {Value::Kind::kInt});
    t.loc = r_.loc(es[0].value);
    if (const Value* v = t.value.literal_value(); v && v->kind == Value::Kind::kInt) {
      if (v->i < 0) r_.error("out-of-range", what + " must not be negative", es[0].value);
      if (v->i > kMaxTime)
        r_.error("out-of-range", what + " is larger than " + std::to_string(kMaxTime), es[0].value);
      if (plural && v->i == 0 && what != "'over'")
        r_.error("out-of-range", what + " must be at least 1", es[0].value);
    }
    return t;
  }

  // `plateau: METRIC` with its options (docs/RULES.md, "Metric triggers").
  MetricTrigger metric_trigger(const YAML::Node& n, const std::string& what) {
    MetricTrigger m;
    for (const auto& e : r_.entries(
             n, what, {"plateau", "mode", "patience", "min_delta", "not_before", "not_after"})) {
      if (e.key == "plateau") {
        m.loc = r_.loc(e.value);
        m.metric = r_.string(e.value, "'plateau'").value_or("");
        if (m.metric.find("${") != std::string::npos) {
          m.metric_expr = typed(e.value, "'plateau'", {Value::Kind::kString});
          m.metric.clear();
        } else if (e.value.IsScalar() && !is_metric_name(m.metric))
          r_.error("bad-metric",
                   "'plateau' names the metric a trainer reports: a letter or '_', then up to "
                   "127 letters, digits, '_', '.', '/', ':' or '-'",
                   e.value);
      } else if (e.key == "mode") {
        m.mode = typed(e.value, "'mode'", {Value::Kind::kString});
        if (auto* v = m.mode.literal_value();
            v && v->kind == Value::Kind::kString && v->s != "min" && v->s != "max")
          r_.error("bad-value", "'mode' is 'min' (lower is better) or 'max'", e.value);
      } else if (e.key == "patience") {
        m.patience = typed(e.value, "'patience'", {Value::Kind::kInt});
        if (auto* v = m.patience.literal_value(); v && v->kind == Value::Kind::kInt && v->i < 1)
          r_.error("out-of-range", "'patience' must be at least 1", e.value);
      } else if (e.key == "min_delta") {
        m.min_delta = typed(e.value, "'min_delta'", {Value::Kind::kFloat});
        if (auto* v = m.min_delta.literal_value(); v && !(v->number() >= 0))
          r_.error("out-of-range", "'min_delta' must not be negative", e.value);
      } else {
        Expr& x = e.key == "not_before" ? m.not_before : m.not_after;
        x = typed(e.value, "'" + e.key + "'", {Value::Kind::kInt});
        if (auto* v = x.literal_value(); v && v->kind == Value::Kind::kInt && v->i < 0)
          r_.error("out-of-range", "'" + e.key + "' must not be negative", e.value);
        if (auto* v = x.literal_value(); v && v->kind == Value::Kind::kInt && v->i > kMaxTime)
          r_.error("out-of-range", "'" + e.key + "' is larger than " + std::to_string(kMaxTime),
                   e.value);
      }
    }
    return m;
  }

  Stage stage(const YAML::Node& n) {
    Stage st;
    st.loc = r_.loc(n);
    auto es = r_.entries(
        n, "a stage",
        {"at", "every", "progressive", "start", "rules", "name", "when", "lr", "lr_scale"});
    std::vector<std::string> kinds;
    const YAML::Node *rules_node = nullptr, *start = nullptr;
    for (const auto& e : es) {
      if (e.key == "at" || e.key == "every" || e.key == "progressive") kinds.push_back(e.key);
      if (e.key == "at") {
        st.kind = Stage::Kind::kAt;
        st.at = trigger(e.value, "'at'", false, true);
      } else if (e.key == "every") {
        st.kind = Stage::Kind::kEvery;
        st.period = trigger(e.value, "'every'", true);
      } else if (e.key == "progressive") {
        st.kind = Stage::Kind::kProgressive;
        progressive(e.value, st);
      } else if (e.key == "rules")
        rules_node = &e.value;
      else if (e.key == "start")
        start = &e.value;
      else if (e.key == "name")
        st.name = r_.string(e.value, "'name'").value_or("");
      else if (e.key == "when")
        st.when = typed(e.value, "'when'", {Value::Kind::kBool});
      else if (e.key == "lr" || e.key == "lr_scale")
        (e.key == "lr" ? st.lr : st.lr_scale) = positive_number(e.value, "'" + e.key + "'");
    }
    if (!n.IsMap()) return st;
    if (!st.lr.empty() && !st.lr_scale.empty())
      r_.error("stage-conflict", "a stage sets 'lr' or 'lr_scale', not both", n);
    if (kinds.size() != 1) {
      if (kinds.empty() && es.size() != n.size()) return st;  // an unknown key said it already
      r_.error(kinds.empty() ? "missing-key" : "stage-conflict",
               kinds.empty() ? "a stage needs one of 'at', 'every' or 'progressive'"
                             : "a stage is one of 'at', 'every' or 'progressive', not several",
               n);
      return st;
    }
    if (st.kind == Stage::Kind::kProgressive) {
      if (rules_node)
        r_.error("misplaced-key", "a progressive stage opens its own groups; it takes no 'rules'",
                 *rules_node);
      if (start) r_.error("misplaced-key", "put 'start' inside 'progressive'", *start);
    } else {
      if (!rules_node)
        r_.error("missing-key", "a stage needs 'rules'", n);
      else
        st.rules = rules(*rules_node, "'rules'");
      if (start && st.kind == Stage::Kind::kAt)
        r_.error("misplaced-key", "'start' belongs to 'every' stages", *start);
      if (st.kind == Stage::Kind::kEvery) {
        st.at.unit = st.period.unit;
        st.at.value = Expr::literal(Value::integer(0), st.loc);
        st.at.loc = st.loc;
        if (start) {
          st.at = trigger(*start, "'start'", false);
          if (st.at.unit != st.period.unit)
            r_.error("unit-mismatch", "'start' and 'every' must count the same unit", *start);
        }
      }
    }
    return st;
  }

  void progressive(const YAML::Node& n, Stage& st) {
    st.selector.kind = Selector::Kind::kRole;
    st.selector.role = Role::kLayer;
    st.selector.text = "layers";
    st.group_size = Expr::literal(Value::integer(1), r_.loc(n));
    st.at.unit = Trigger::Unit::kEpoch;
    st.at.value = Expr::literal(Value::integer(0), r_.loc(n));
    st.at.loc = r_.loc(n);
    bool have_start = false, have_action = false;
    for (const auto& e :
         r_.entries(n, "'progressive'",
                    {"unfreeze", "freeze", "order", "start", "every", "over", "group_size"})) {
      if (e.key == "unfreeze" || e.key == "freeze") {
        if (have_action)
          r_.error("rule-conflict", "a progressive stage either freezes or unfreezes", e.key_node);
        have_action = true;
        st.action = e.key == "freeze" ? Action::kFreeze : Action::kUnfreeze;
        st.selector = selector(e.value, "'" + e.key + "'");
      } else if (e.key == "order") {
        st.top_down = r_.choice(e.value, "order", {"top_down", "bottom_up"}).value_or("top_down") ==
                      "top_down";
      } else if (e.key == "start") {
        st.at = trigger(e.value, "'start'", false);
        have_start = true;
      } else if (e.key == "every") {
        st.period = trigger(e.value, "'every'", true, true);
        st.has_every = true;
      } else if (e.key == "over") {
        st.over = trigger(e.value, "'over'", true);
      } else if (e.key == "group_size") {
        st.group_size = typed(e.value, "'group_size'", {Value::Kind::kInt});
        if (auto* v = st.group_size.literal_value(); v && v->kind == Value::Kind::kInt && v->i < 1)
          r_.error("out-of-range", "'group_size' must be at least 1", e.value);
      }
    }
    if (!n.IsMap()) return;
    if (st.has_every == st.over.has_value())
      r_.error("bad-progressive",
               "a progressive stage takes exactly one of 'every' (one more group each period) or "
               "'over' (all groups spread over a span)",
               n);
    const Trigger& span = st.has_every ? st.period : st.over ? *st.over : st.at;
    if (have_start && st.at.unit != span.unit)
      r_.error("unit-mismatch",
               "'start' and '" + std::string(st.has_every ? "every" : "over") +
                   "' must count the same unit",
               n);
    if (!have_start) st.at.unit = span.unit;
  }

  void params(const YAML::Node& n) {
    for (const auto& e : r_.entries(n, "'params'", {})) {
      ParamDecl d;
      d.name = e.key;
      d.loc = r_.loc(e.key_node);
      static const RE2 ident("[A-Za-z_][A-Za-z0-9_]*");
      if (!RE2::FullMatch(e.key, ident))
        r_.error("bad-name", "parameter name '" + e.key + "' is not an identifier", e.key_node);
      if (s_.find_param(e.key)) {
        r_.error("duplicate-param",
                 "parameter '" + e.key + "' is already declared (by the strategy this one extends)",
                 e.key_node);
        continue;
      }
      if (!e.value.IsMap()) {
        auto v = r_.value(e.value, "the default of '" + e.key + "'");
        if (!v) continue;
        d.default_value = *v;
        switch (v->kind) {
          case Value::Kind::kBool: d.type = ParamDecl::Type::kBool; break;
          case Value::Kind::kInt: d.type = ParamDecl::Type::kInt; break;
          case Value::Kind::kFloat: d.type = ParamDecl::Type::kFloat; break;
          case Value::Kind::kString: d.type = ParamDecl::Type::kString; break;
          case Value::Kind::kList: d.type = ParamDecl::Type::kStrings; break;
          case Value::Kind::kNull:
            r_.error("param-type",
                     "parameter '" + e.key + "' needs a type: write { type: int, default: null }",
                     e.value);
            continue;
        }
        s_.params.push_back(d);
        continue;
      }
      bool has_type = false, has_default = false;
      YAML::Node def;
      for (const auto& f :
           r_.entries(e.value, "parameter '" + e.key + "'",
                      {"type", "default", "min", "max", "choices", "doc", "required"})) {
        if (f.key == "type") {
          auto t = r_.choice(f.value, "type", {"int", "float", "bool", "string", "strings"});
          has_type = true;
          if (!t) continue;
          d.type = *t == "int"      ? ParamDecl::Type::kInt
                   : *t == "float"  ? ParamDecl::Type::kFloat
                   : *t == "bool"   ? ParamDecl::Type::kBool
                   : *t == "string" ? ParamDecl::Type::kString
                                    : ParamDecl::Type::kStrings;
        } else if (f.key == "default") {
          has_default = true;
          def = f.value;
        } else if (f.key == "min" || f.key == "max") {
          auto v = r_.value(f.value, f.key);
          if (!v || !v->is_number())
            r_.error("wrong-type", "'" + f.key + "' must be a number", f.value);
          else
            (f.key == "min" ? d.min : d.max) = v->number();
        } else if (f.key == "choices") {
          auto v = r_.value(f.value, "'choices'");
          bool ok = v && v->kind == Value::Kind::kList && !v->list.empty();
          for (size_t k = 0; ok && k < v->list.size(); ++k) {
            ok = v->list[k].kind == Value::Kind::kString;
            if (ok) d.choices.push_back(v->list[k].s);
          }
          if (!ok) r_.error("wrong-type", "'choices' must be a non-empty list of strings", f.value);
        } else if (f.key == "doc") {
          d.doc = r_.string(f.value, "'doc'").value_or("");
        } else if (f.key == "required") {
          auto v = r_.value(f.value, "'required'");
          if (!v || v->kind != Value::Kind::kBool)
            r_.error("wrong-type", "'required' must be true or false", f.value);
          else
            d.required = v->b;
        }
      }
      if (!has_type) {
        r_.error("missing-key",
                 "parameter '" + e.key + "' needs a 'type' (int, float, bool, string, strings)",
                 e.value);
        continue;
      }
      if (has_default) {
        auto v = r_.value(def, "the default of '" + e.key + "'");
        if (v && v->is_null()) d.nullable = true;
        if (v && !v->is_null()) {
          d.default_value = *v;
        }
        if (d.required)
          r_.error("param-conflict", "parameter '" + e.key + "' is required and has a default",
                   def);
      } else if (!d.required) {
        d.required = true;  // no default: the user must give it
      }
      if (!d.choices.empty() && d.type != ParamDecl::Type::kString)
        r_.error("param-type", "parameter '" + e.key + "': 'choices' goes with type: string",
                 e.value);
      s_.params.push_back(d);
      if (has_default && !d.default_value.is_null()) {
        std::string err = check_param_value(s_.params.back(), s_.params.back().default_value);
        if (!err.empty()) r_.error("param-type", "default of '" + e.key + "': " + err, def);
      }
    }
  }

  void options(const YAML::Node& n) {
    s_.options.loc = r_.loc(n);
    for (const auto& e : r_.entries(n, "'options'",
                                    {"batchnorm", "frozen_prefix", "optimizer_state",
                                     "unfreeze_lr_scale", "lr_decay", "steps_per_epoch"})) {
      if (e.key == "batchnorm") {
        auto c = r_.choice(e.value, "batchnorm policy", {"unchanged", "eval_when_frozen"});
        if (c)
          s_.options.batchnorm = *c == "unchanged" ? Options::BatchNorm::kUnchanged
                                                   : Options::BatchNorm::kEvalWhenFrozen;
      } else if (e.key == "frozen_prefix") {
        auto c = r_.choice(e.value, "frozen_prefix policy", {"unchanged", "eval"});
        if (c)
          s_.options.frozen_prefix =
              *c == "eval" ? Options::FrozenPrefix::kEval : Options::FrozenPrefix::kUnchanged;
      } else if (e.key == "optimizer_state") {
        auto c = r_.choice(e.value, "optimizer_state policy", {"drop", "keep"});
        if (c)
          s_.options.optimizer_state =
              *c == "drop" ? Options::OptimizerState::kDrop : Options::OptimizerState::kKeep;
      } else if (e.key == "steps_per_epoch") {
        s_.options.steps_per_epoch = typed(e.value, "'steps_per_epoch'", {Value::Kind::kInt});
      } else {
        (e.key == "lr_decay" ? s_.options.lr_decay : s_.options.unfreeze_lr_scale) =
            positive_number(e.value, "'" + e.key + "'");
      }
    }
  }

  Expr positive_number(const YAML::Node& n, const std::string& what) {
    Expr x = typed(n, what, {Value::Kind::kFloat});
    if (auto* v = x.literal_value(); v && v->is_number() && v->number() <= 0)
      r_.error("out-of-range", what + " must be positive", n);
    return x;
  }

  void discovery(const YAML::Node& n) {
    read_discovery_block(r_, n, s_.discovery, &s_.discovery_replace);
  }

  void check_stage_order() {
    // Literal `at` triggers must not go back in time within one unit.
    std::optional<int64_t> last[2];
    SourceLoc last_loc[2];
    for (const auto& st : s_.stages) {
      if (st.kind != Stage::Kind::kAt) continue;
      const Value* v = st.at.value.literal_value();
      if (!v || v->kind != Value::Kind::kInt) continue;
      int u = st.at.unit == Trigger::Unit::kEpoch ? 0 : 1;
      if (last[u] && v->i < *last[u]) {
        r_.diags().error("stage-order",
                         "stage at " + std::string(unit_name(st.at.unit)) + " " +
                             std::to_string(v->i) + " comes after a stage at " +
                             unit_name(st.at.unit) + " " + std::to_string(*last[u]) +
                             "; list stages in time order",
                         st.at.loc,
                         {"the earlier stage is at " + last_loc[u].file + ":" +
                          std::to_string(last_loc[u].line)});
      }
      last[u] = v->i;
      last_loc[u] = st.at.loc;
    }
  }

  static std::string check_param_value(const ParamDecl& d, Value& v);

  YamlReader& r_;
  StrategyDef& s_;
  SelectorParser sel_;
};

std::string FileParser::check_param_value(const ParamDecl& d, Value& v) {
  if (v.is_null()) return d.nullable ? "" : "'" + d.name + "' cannot be null";
  switch (d.type) {
    case ParamDecl::Type::kInt:
      if (v.kind != Value::Kind::kInt) return "expected an int, got " + v.to_string();
      break;
    case ParamDecl::Type::kFloat:
      if (!v.is_number()) return "expected a number, got " + v.to_string();
      v = Value::real(v.number());
      break;
    case ParamDecl::Type::kBool:
      if (v.kind != Value::Kind::kBool) return "expected true or false, got " + v.to_string();
      break;
    case ParamDecl::Type::kString:
      if (v.kind != Value::Kind::kString)
        v = Value::string(v.kind == Value::Kind::kList ? v.to_string() : v.to_string());
      if (v.kind != Value::Kind::kString) return "expected a string";
      break;
    case ParamDecl::Type::kStrings:
      if (v.kind == Value::Kind::kString) v = Value::of_list({v});
      if (v.kind != Value::Kind::kList) return "expected a list of strings, got " + v.to_string();
      for (auto& item : v.list) {
        if (item.kind == Value::Kind::kList || item.is_null())
          return "expected a list of strings, got " + v.to_string();
        if (item.kind != Value::Kind::kString) item = Value::string(item.to_string());
      }
      break;
  }
  if (!d.choices.empty() && v.kind == Value::Kind::kString &&
      std::find(d.choices.begin(), d.choices.end(), v.s) == d.choices.end())
    return "must be one of " + join(d.choices, ", ") + ", got '" + v.s + "'" +
           did_you_mean(v.s, d.choices);
  if (v.is_number() && d.min && v.number() < *d.min)
    return "must be at least " + Value::real(*d.min).to_string() + ", got " + v.to_string();
  if (v.is_number() && d.max && v.number() > *d.max)
    return "must be at most " + Value::real(*d.max).to_string() + ", got " + v.to_string();
  return "";
}

}  // namespace

const char* param_type_name(ParamDecl::Type t) {
  switch (t) {
    case ParamDecl::Type::kInt: return "int";
    case ParamDecl::Type::kFloat: return "float";
    case ParamDecl::Type::kBool: return "bool";
    case ParamDecl::Type::kString: return "string";
    case ParamDecl::Type::kStrings: return "strings";
  }
  return "int";
}

const ParamDecl* StrategyDef::find_param(const std::string& n) const {
  for (const auto& p : params)
    if (p.name == n) return &p;
  return nullptr;
}

std::string check_param_value(const ParamDecl& d, Value& v) {
  return FileParser::check_param_value(d, v);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& f : embedded_rule_files()) {
    std::string n = f.name;
    // Presets are the top-level YAML files; discovery.yaml and the folders (families/) are data.
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".yaml") == 0 && n != "discovery.yaml" &&
        n.find('/') == std::string::npos)
      names.push_back(n.substr(0, n.size() - 5));
  }
  return names;
}

void parse_strategy_body(YamlReader& r, const std::vector<YamlReader::Entry>& entries,
                         StrategyDef& s, const std::string& file) {
  FileParser fp(r, s);
  // Parameters before everything that may refer to them.
  for (const auto& e : entries)
    if (e.key == "params") fp.params(e.value);
  std::vector<Rule> own_rules;
  std::vector<Stage> own_stages;
  for (const auto& e : entries) {
    if (e.key == "layerfreeze") {
      auto v = r.value(e.value, "'layerfreeze'");
      if (!v || v->kind != Value::Kind::kInt || v->i != 1)
        r.error("bad-version",
                "unsupported rules version " + (v ? v->to_string() : std::string("?")) +
                    "; this layerfreeze reads version 1",
                e.value);
    } else if (e.key == "name") {
      s.name = r.string(e.value, "'name'").value_or("");
    } else if (e.key == "description") {
      s.description = r.string(e.value, "'description'").value_or("");
    } else if (e.key == "options") {
      fp.options(e.value);
    } else if (e.key == "discovery") {
      fp.discovery(e.value);
    } else if (e.key == "rules") {
      own_rules = fp.rules(e.value, "'rules'");
    } else if (e.key == "stages") {
      if (!e.value.IsSequence()) {
        r.error("wrong-type", "'stages' must be a list of stages, not " + describe(e.value),
                e.value);
        continue;
      }
      for (const auto& c : e.value) own_stages.push_back(fp.stage(c));
    }
  }
  s.rules.insert(s.rules.end(), own_rules.begin(), own_rules.end());
  if (s.rules.size() > kMaxRules)
    r.diags().error(
        "too-many-rules",
        std::to_string(s.rules.size()) + " rules; the limit is " + std::to_string(kMaxRules),
        {file, 0, 0});
  if (s.stages.size() + own_stages.size() > kMaxStages)
    r.diags().error("too-many-stages",
                    std::to_string(s.stages.size() + own_stages.size()) + " stages; the limit is " +
                        std::to_string(kMaxStages),
                    {file, 0, 0});
  s.stages.insert(s.stages.end(), own_stages.begin(), own_stages.end());
  fp.check_stage_order();
}

}  // namespace layerfreeze
