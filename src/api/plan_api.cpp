// The public plan API (include/layerfreeze/plan.hpp) over the core: the rules loader, the
// compiler, the plan and its printers. Every component that compiles a plan comes through here.
#include "layerfreeze/plan.hpp"

#include "analysis/plan_summary.hpp"
#include "core/compiler.hpp"
#include "core/rules_parser.hpp"
#include "print/explain.hpp"
#include "print/plan_html.hpp"
#include "print/plan_printer.hpp"
#include "print/plan_svg.hpp"

namespace layerfreeze {

struct Strategy::Impl {
  StrategyDef def;
  SourceTexts sources;
};

namespace {

template <class Load>
std::optional<Strategy> make_strategy(Load&& load, SourceTexts* texts) {
  SourceTexts sources;
  std::optional<StrategyDef> def = load(sources);
  if (texts) texts->merge(sources);
  if (!def) return std::nullopt;
  return Strategy::from_def(std::move(*def), std::move(sources));
}

}  // namespace

std::optional<Strategy> Strategy::load(const std::string& source, Diagnostics& diags,
                                       const std::string& section, SourceTexts* texts) {
  return make_strategy(
      [&](SourceTexts& src) { return RulesLoader(diags, src).load(source, section); }, texts);
}

std::optional<Strategy> Strategy::from_yaml(const std::string& text, const std::string& name,
                                            Diagnostics& diags, const std::string& section,
                                            SourceTexts* texts) {
  return make_strategy(
      [&](SourceTexts& src) { return RulesLoader(diags, src).load_text(text, name, section); },
      texts);
}

Strategy Strategy::from_def(StrategyDef def, SourceTexts sources) {
  Strategy s;
  auto impl = std::make_shared<Impl>();
  impl->def = std::move(def);
  impl->sources = std::move(sources);
  s.impl_ = std::move(impl);
  return s;
}

const std::string& Strategy::name() const { return impl_->def.name; }
const std::string& Strategy::origin() const { return impl_->def.origin; }
const std::string& Strategy::description() const { return impl_->def.description; }
const SourceTexts& Strategy::sources() const { return impl_->sources; }
const StrategyDef& Strategy::def() const { return impl_->def; }

std::vector<std::string> Strategy::param_names() const {
  std::vector<std::string> out;
  for (const auto& p : impl_->def.params) out.push_back(p.name);
  return out;
}

Plan::Plan(std::shared_ptr<const CompiledPlan> p) : impl_(std::move(p)) {}

const Inventory& Plan::inventory() const { return *impl_->inventory; }
const std::string& Plan::name() const { return impl_->name; }
const std::string& Plan::origin() const { return impl_->origin; }
const std::string& Plan::fingerprint() const { return impl_->fingerprint(); }
const std::vector<Diagnostic>& Plan::warnings() const { return impl_->warnings; }
const CompiledPlan& Plan::compiled() const { return *impl_; }

Time Plan::horizon(std::optional<int64_t> epochs, std::optional<int64_t> steps) const {
  return impl_->horizon(epochs, steps);
}

PlanState Plan::state_at(const Time& t) const {
  PlanState s;
  s.at = t;
  const Inventory& inv = *impl_->inventory;
  Bitset f = impl_->frozen_at(t);
  s.frozen.resize(inv.params.size());
  for (size_t i = 0; i < inv.params.size(); ++i) {
    bool frozen = f.test(i);
    s.frozen[i] = frozen;
    (frozen ? s.frozen_numel : s.trainable_numel) += inv.params[i].numel;
    ++(frozen ? s.frozen_tensors : s.trainable_tensors);
  }
  return s;
}

std::vector<ChangePoint> Plan::change_points(std::optional<Time> horizon) const {
  std::vector<ChangePoint> out;
  for (auto& p : impl_->timeline(horizon ? *horizon : impl_->horizon()))
    out.push_back(
        {p.at, std::move(p.causes), std::move(p.newly_frozen), std::move(p.newly_unfrozen)});
  return out;
}

std::optional<std::string> Plan::provenance(const std::string& name, const Time& t) const {
  auto i = impl_->inventory->find(name);
  if (!i) return std::nullopt;
  const PlanRule* r = impl_->deciders_at(t)[*i];
  return r ? r->prov.where() + " " + r->prov.text : std::string();
}

std::string Plan::text(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return plan_text(summarize(*impl_, optimizer, horizon ? *horizon : impl_->horizon()));
}

std::string Plan::markdown(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return plan_markdown(summarize(*impl_, optimizer, horizon ? *horizon : impl_->horizon()));
}

std::string Plan::json(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return plan_json(summarize(*impl_, optimizer, horizon ? *horizon : impl_->horizon()));
}

std::string Plan::svg(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return plan_svg(summarize(*impl_, optimizer, horizon ? *horizon : impl_->horizon()));
}

std::string Plan::html(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return plan_html(summarize(*impl_, optimizer, horizon ? *horizon : impl_->horizon()));
}

std::optional<std::string> Plan::explain(const std::string& name, const Time& t) const {
  auto i = impl_->inventory->find(name);
  if (!i) return std::nullopt;
  return explain_text(*impl_, *i, t, impl_->horizon());
}

std::optional<Plan> compile(const Strategy& strategy, Inventory model, const PlanOptions& options,
                            Diagnostics& diags) {
  auto compiled = compile(strategy.def(), std::move(model), options, diags);
  if (!compiled) return std::nullopt;
  return Plan(std::make_shared<const CompiledPlan>(std::move(*compiled)));
}

std::string diff_text(const Plan& a, const Plan& b, std::optional<Time> horizon) {
  bool differ = false;
  return diff_text(a.compiled(), b.compiled(), horizon ? *horizon : a.compiled().horizon(),
                   &differ);
}

}  // namespace layerfreeze
