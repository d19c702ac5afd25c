// The public plan API (include/layerfreeze/plan.hpp) over the core: the rules loader, the
// compiler, the plan and its printers. Every component that compiles a plan comes through here.
#include "layerfreeze/plan.hpp"

#include "analysis/plan_diff.hpp"
#include "analysis/plan_summary.hpp"
#include "core/canonical_plan.hpp"
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
const std::string& Plan::canonical() const { return impl_->canonical(); }
const std::vector<Diagnostic>& Plan::warnings() const { return impl_->warnings; }
const CompiledPlan& Plan::compiled() const { return *impl_; }

Time Plan::horizon(std::optional<int64_t> epochs, std::optional<int64_t> steps) const {
  return impl_->horizon(epochs, steps);
}

PlanState Plan::state_at(const Time& t) const {
  PlanState s;
  s.at = t;
  const Inventory& inv = *impl_->inventory;
  const Selection now = impl_->state_at(t);
  s.frozen.resize(inv.params.size());
  for (size_t i = 0; i < inv.params.size(); ++i) {
    bool frozen = now.params.test(i);
    s.frozen[i] = frozen;
    ++(frozen ? s.frozen_tensors : s.trainable_tensors);
    if (impl_->partial(now, static_cast<uint32_t>(i)))
      s.masked.push_back({static_cast<uint32_t>(i),
                          impl_->slices.experts_in(static_cast<uint32_t>(i), now.slices)});
  }
  // The one count: whole frozen tensors and the frozen experts of masked ones.
  s.frozen_numel = impl_->frozen_numel(now);
  s.trainable_numel = inv.total_numel() - s.frozen_numel;
  return s;
}

std::vector<ChangePoint> Plan::change_points(std::optional<Time> horizon) const {
  std::vector<ChangePoint> out;
  for (auto& p : impl_->timeline(horizon ? *horizon : impl_->horizon()))
    out.push_back({p.at, std::move(p.causes), std::move(p.newly_frozen),
                   std::move(p.newly_unfrozen), std::move(p.remasked)});
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

std::string PlanDiff::text() const {
  std::string s;
  for (const auto& i : items) s += i.where + ": " + i.what + "\n";
  return s;
}

PlanDiff diff(const Plan& a, const Plan& b) {
  if (a.fingerprint() == b.fingerprint() && a.canonical() == b.canonical()) return {};
  return diff_canonical(nlohmann::json::parse(a.canonical()), nlohmann::json::parse(b.canonical()),
                        &a.inventory());
}

std::string diff_text(const Plan& a, const Plan& b, std::optional<Time> horizon, bool* differs) {
  bool states_differ = false;
  std::string text = diff_text(a.compiled(), b.compiled(),
                               horizon ? *horizon : a.compiled().horizon(), &states_differ);
  const PlanDiff d = diff(a, b);
  if (differs) *differs = d.differs();
  if (!states_differ)
    text = d.differs() ? "the two plans freeze the same parameters at every time shown\n"
                       : "the two plans are the same (fingerprint " + a.fingerprint() + ")\n";
  // What the states do not show: learning rates, policies, bound parameters, the model.
  std::string rest;
  using Kind = PlanDiff::Item::Kind;
  for (const auto& i : d.items)
    if (!states_differ || (i.kind != Kind::kState && i.kind != Kind::kSchedule))
      rest += "  " + i.where + ": " + i.what + "\n";
  if (!rest.empty()) text += "they also differ in what a trainer runs:\n" + rest;
  return text;
}

}  // namespace layerfreeze
