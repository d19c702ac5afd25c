// Helpers shared by the core tests: parse rules text, compile against a built-in or a small
// hand-made inventory, and read states.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/plan_access.hpp"
#include "core/compiler.hpp"
#include "core/facts_builder.hpp"
#include "core/rules_parser.hpp"
#include "layerfreeze/model_source.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze::test {

struct Parsed {
  std::optional<StrategyDef> strategy;
  Diagnostics diags;
  SourceTexts sources;
  std::string errors() const { return format_diagnostics(diags); }
};

inline std::unique_ptr<Parsed> parse(const std::string& yaml, const std::string& file = "t.yaml") {
  auto p = std::make_unique<Parsed>();
  RulesLoader loader(p->diags, p->sources);
  p->strategy = loader.load_text(yaml, file);
  return p;
}

struct Compiled {
  std::optional<CompiledPlan> plan;
  Diagnostics diags;
  std::string errors() const { return format_diagnostics(diags); }
};

// Both compile through the public API (include/layerfreeze/plan.hpp), as every component does;
// the tests then read the compiled plan's internals.
inline Compiled compile_text(const std::string& yaml, Inventory inv,
                             std::vector<std::string> sets = {},
                             std::optional<int64_t> spe = std::nullopt, bool strict = false) {
  Compiled c;
  auto s = Strategy::from_yaml(yaml, "t.yaml", c.diags);
  if (!s) return c;
  PlanOptions o;
  o.sets = std::move(sets);
  o.steps_per_epoch = spe;
  o.strict = strict;
  if (auto p = compile(*s, inv, o, c.diags)) c.plan = PlanAccess::compiled(*p);
  return c;
}

inline Compiled compile_preset(const std::string& name, const std::string& model,
                               std::vector<std::string> sets = {}) {
  Compiled c;
  auto s = Strategy::load("preset:" + name, c.diags);
  auto inv = load_model(model, c.diags);
  if (!s || !inv) return c;
  PlanOptions o;
  o.sets = std::move(sets);
  if (auto p = compile(*s, *inv, o, c.diags)) c.plan = PlanAccess::compiled(*p);
  return c;
}

inline Inventory builtin(const std::string& name) { return *builtin_model(name); }

/// A small inventory from names, each with `numel` 10 (float32, shape [10]).
inline Inventory names_inventory(const std::vector<std::string>& names,
                                 const std::string& source = "test-model") {
  ModelFacts facts;
  facts.source = source;
  FactsBuilder build(facts);
  for (const auto& n : names) {
    Tensor p;
    p.name = n;
    p.shape = {10};
    p.numel = 10;
    p.dtype = "float32";
    build.add(p);
  }
  return Inventory(std::move(facts));
}

/// `inv` with other facts: a copy of its facts changed by `edit(FactsBuilder&)`, no structure.
template <class Edit>
Inventory with_facts(const Inventory& inv, Edit edit) {
  ModelFacts facts = inv.facts();
  {
    FactsBuilder build(facts);
    edit(build);
  }
  return Inventory(std::move(facts));
}

/// The names frozen at `t`.
inline std::vector<std::string> frozen_names(const CompiledPlan& plan, Time t = {0, 0}) {
  std::vector<std::string> out;
  plan.frozen_at(t).for_each([&](size_t i) { out.push_back(plan.inventory->params()[i].name); });
  return out;
}

inline int64_t frozen_numel(const CompiledPlan& plan, Time t = {0, 0}) {
  int64_t n = 0;
  plan.frozen_at(t).for_each([&](size_t i) { n += plan.inventory->params()[i].numel; });
  return n;
}

}  // namespace layerfreeze::test
