// Binding a strategy's declared parameters to values: defaults, `with:`, `--set`.
#include <yaml-cpp/yaml.h>

#include "core/rules_parser.hpp"

#include <variant>
#include "core/yaml_reader.hpp"

namespace layerfreeze {

namespace {

Value value_of(const ParamValue& v) {
  struct Visit {
    Value operator()(std::nullptr_t) const { return Value::null(); }
    Value operator()(bool b) const { return Value::boolean(b); }
    Value operator()(int64_t i) const { return Value::integer(i); }
    Value operator()(double f) const { return Value::real(f); }
    Value operator()(const std::string& s) const { return Value::string(s); }
    Value operator()(const std::vector<std::string>& l) const {
      std::vector<Value> items;
      for (const auto& s : l) items.push_back(Value::string(s));
      return Value::of_list(std::move(items));
    }
  };
  return std::visit(Visit{}, v);
}

void unknown_param(const StrategyDef& s, const std::string& key,
                   const std::vector<std::string>& names, const SourceLoc& loc,
                   Diagnostics& diags) {
  std::string declared;
  for (const auto& n : names) declared += (declared.empty() ? "" : ", ") + n;
  diags.error(
      "unknown-param",
      "'" + s.origin + "' has no parameter '" + key + "'" + did_you_mean(key, names), loc,
      {declared.empty() ? "it declares no parameters" : "declared parameters: " + declared});
}

}  // namespace

std::optional<Scope> bind_params(const StrategyDef& s, const std::vector<std::string>& sets,
                                 const std::vector<std::pair<std::string, ParamValue>>& values,
                                 Diagnostics& diags, bool allow_missing) {
  Scope scope;
  size_t errors_before = diags.count(Severity::kError);
  for (const auto& p : s.params)
    if (!p.required || p.nullable) scope[p.name] = p.default_value;
  for (const auto& [k, v] : s.bound) scope[k] = v;
  std::vector<std::string> names;
  for (const auto& p : s.params) names.push_back(p.name);
  for (const auto& set : sets) {
    auto eq = set.find('=');
    SourceLoc loc{"--set " + set, 0, 0};
    if (eq == std::string::npos || eq == 0) {
      diags.error("bad-set", "--set takes KEY=VALUE, got '" + set + "'", loc);
      continue;
    }
    std::string key = set.substr(0, eq), text = set.substr(eq + 1);
    const ParamDecl* d = s.find_param(key);
    if (!d) {
      unknown_param(s, key, names, loc, diags);
      continue;
    }
    Value v;
    try {
      const bool nested_ok = nesting_within_limit(text, 64);
      YAML::Node n = nested_ok ? YAML::Load(text) : YAML::Node();
      if (!nested_ok || !expansion_within_limit(n)) {
        diags.error("bad-set", "--set " + key + ": the value nests too deeply or is too large",
                    loc);
        continue;
      }
      Diagnostics local;
      YamlReader r("--set", local);
      auto parsed = r.value(n, key);
      if (!parsed) {
        diags.error("bad-set", "--set " + key + ": the value must be a scalar or a list", loc);
        continue;
      }
      v = *parsed;
    } catch (const YAML::Exception& e) {
      diags.error("bad-set", "--set " + key + ": " + e.msg, loc);
      continue;
    }
    std::string err = check_param_value(*d, v);
    if (!err.empty()) {
      diags.error("param-type", "--set " + key + ": " + err, loc);
      continue;
    }
    scope[key] = v;
  }
  // Typed values (the C++ API): the same checks, without a YAML round trip.
  for (const auto& [key, typed] : values) {
    const SourceLoc loc{};  // the message names the parameter (a location would repeat it)
    const ParamDecl* d = s.find_param(key);
    if (!d) {
      unknown_param(s, key, names, loc, diags);
      continue;
    }
    Value v = value_of(typed);
    std::string err = check_param_value(*d, v);
    if (!err.empty()) {
      diags.error("param-type", "parameter " + key + ": " + err, loc);
      continue;
    }
    scope[key] = v;
  }
  if (!allow_missing) {
    for (const auto& p : s.params) {
      if (scope.count(p.name)) continue;
      diags.error("missing-param",
                  "parameter '" + p.name + "' (" + param_type_name(p.type) +
                      ") is required: pass --set " + p.name + "=VALUE (the command line) or " +
                      "PlanOptions::values {\"" + p.name + "\", …} (C++)",
                  p.loc,
                  p.doc.empty() ? std::vector<std::string>{}
                                : std::vector<std::string>{p.name + ": " + p.doc});
    }
  }
  if (diags.count(Severity::kError) > errors_before) return std::nullopt;
  return scope;
}

}  // namespace layerfreeze
