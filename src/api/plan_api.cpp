// The public plan API (include/layerfreeze/plan.hpp) over the core: the rules loader, the
// compiler, the plan and its printers. Every component that compiles a plan comes through here.
#include "layerfreeze/plan.hpp"

#include "analysis/distributed_lint.hpp"
#include "analysis/plan_diff.hpp"
#include "analysis/plan_summary.hpp"
#include "api/plan_access.hpp"
#include "core/canonical_plan.hpp"
#include "core/compiler.hpp"
#include "core/expert_config.hpp"
#include "core/layer_discovery.hpp"
#include "core/metric_triggers.hpp"
#include "core/rules_parser.hpp"
#include "print/diff_picture.hpp"
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
  return PlanAccess::strategy(std::move(*def), std::move(sources));
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

Strategy PlanAccess::strategy(StrategyDef def, SourceTexts sources) {
  Strategy s;
  auto impl = std::make_shared<Strategy::Impl>();
  impl->def = std::move(def);
  impl->sources = std::move(sources);
  s.impl_ = std::move(impl);
  return s;
}

const std::string& Strategy::name() const { return impl_->def.name; }
const std::string& Strategy::origin() const { return impl_->def.origin; }
const std::string& Strategy::description() const { return impl_->def.description; }
const SourceTexts& Strategy::sources() const { return impl_->sources; }
const StrategyDef& PlanAccess::def(const Strategy& s) { return s.impl_->def; }

std::optional<Strategy> Strategy::load(const std::string& path, const std::string& label,
                                       const Files& files, Diagnostics& diags,
                                       const std::string& section, SourceTexts* texts) {
  return make_strategy(
      [&](SourceTexts& src) {
        return RulesLoader(diags, src, files).load_as(path, label, section);
      },
      texts);
}

std::vector<Strategy::Param> Strategy::params() const {
  std::vector<Param> out;
  for (const auto& p : impl_->def.params)
    out.push_back({p.name, param_type_name(p.type), p.required && !p.nullable,
                   p.default_value.to_string(), p.doc});
  return out;
}

size_t Strategy::rule_count() const { return impl_->def.rules.size(); }
size_t Strategy::stage_count() const { return impl_->def.stages.size(); }

bool Strategy::check_parameters(const std::vector<std::string>& sets, Diagnostics& diags,
                                bool allow_missing) const {
  return bind_params(impl_->def, sets, {}, diags, allow_missing).has_value();
}

bool Strategy::check_files(Diagnostics& diags) const {
  const size_t before = diags.count(Severity::kError);
  std::function<void(const Selector&)> visit = [&](const Selector& s) {
    if (s.kind == Selector::Kind::kExperts && !s.from.empty())
      if (const Value* v = s.from.literal_value(); v && v->kind == Value::Kind::kString)
        check_expert_config_file(expert_config_path(v->s, s.from.loc(), true), v->s, s.from.loc(),
                                 diags);
    for (const auto& c : s.children) visit(c);
    for (const auto& e : s.except) visit(e);
  };
  for (const auto& r : impl_->def.rules) visit(r.selector);
  for (const auto& st : impl_->def.stages) {
    for (const auto& r : st.rules) visit(r.selector);
    visit(st.selector);
  }
  return diags.count(Severity::kError) == before;
}

void Strategy::discover(Inventory& model, Diagnostics& diags) const {
  discover_layers(
      model,
      DiscoveryPatterns::shipped().merged(impl_->def.discovery, impl_->def.discovery_replace),
      diags);
}

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
std::string Plan::parameters_text() const { return params_text(*impl_); }
std::optional<int64_t> Plan::steps_per_epoch() const { return impl_->options.steps_per_epoch; }
bool Plan::uses_steps() const { return impl_->uses_steps; }

std::vector<std::string> Plan::watched_metrics() const {
  return TriggerMonitor(impl_->watches).metrics();
}

std::optional<Plan> Plan::assuming(const std::vector<std::string>& assumptions,
                                   Diagnostics& diags) const {
  const size_t errors = diags.count(Severity::kError);
  std::vector<PlateauAssumption> parsed;
  for (const auto& a : assumptions)
    if (auto p = parse_assumption(a, diags)) parsed.push_back(std::move(*p));
  if (diags.count(Severity::kError) > errors) return std::nullopt;
  auto fired = assume_plateaus(impl_->watches, parsed, diags);
  if (diags.count(Severity::kError) > errors) return std::nullopt;
  return Plan(std::make_shared<const CompiledPlan>(impl_->placed(fired)));
}

std::optional<Plan> Plan::replaying(const std::string& history, const std::string& name,
                                    Diagnostics& diags) const {
  auto records = parse_metric_history(history, name, diags);
  if (!records) return std::nullopt;
  return Plan(std::make_shared<const CompiledPlan>(
      impl_->placed(replay_history(impl_->watches, *records))));
}

Time Plan::horizon(std::optional<int64_t> epochs, std::optional<int64_t> steps) const {
  return impl_->horizon(epochs, steps);
}

PlanState Plan::state_at(const Time& t) const {
  PlanState s;
  s.at = t;
  const Inventory& inv = *impl_->inventory;
  const Selection now = impl_->state_at(t);
  s.frozen.resize(inv.params().size());
  for (size_t i = 0; i < inv.params().size(); ++i) {
    bool frozen = now.params.test(i);
    s.frozen[i] = frozen;
    ++(frozen ? s.frozen_tensors : s.trainable_tensors);
    if (impl_->partial(now, static_cast<uint32_t>(i)))
      s.masked.push_back({static_cast<uint32_t>(i),
                          impl_->slices.indices_in(static_cast<uint32_t>(i), now.slices)});
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

PlanReport Plan::report(OptimizerKind optimizer, std::optional<Time> horizon,
                        bool distributed) const {
  return report(optimizer, horizon, distributed, 0, 0);
}

PlanReport Plan::report(OptimizerKind optimizer, std::optional<Time> horizon, bool distributed,
                        int64_t cache_samples, int64_t seq_len) const {
  const Time h = horizon ? *horizon : impl_->horizon();
  auto sum = std::make_shared<PlanSummary>(summarize(*impl_, optimizer, h));
  sum->cache_samples = std::max<int64_t>(0, cache_samples);
  add_sequence_terms(*impl_, seq_len, *sum);
  if (distributed) {
    std::vector<Diagnostic> lint;
    distributed_lint(*impl_, h, lint);
    sum->distributed = std::move(lint);
  }
  PlanReport r;
  r.plan_ = impl_;
  r.summary_ = std::move(sum);
  return r;
}

std::string PlanReport::text() const { return plan_text(*summary_); }
std::string PlanReport::json() const { return plan_json(*summary_); }
std::string PlanReport::markdown(const std::string& svg_link) const {
  return plan_markdown(*summary_, svg_link);
}
std::string PlanReport::svg() const { return plan_svg(*summary_); }
std::string PlanReport::html() const { return plan_html(*summary_); }

std::vector<PlanReport::Stage> PlanReport::stages() const {
  std::vector<Stage> out;
  for (const auto& st : summary_->stages)
    out.push_back({st.point.at, time_text(st.point.at, plan_->uses_steps), st.frozen_numel,
                   st.trainable_numel, st.frozen_tensors, st.trainable_tensors, st.grad_bytes,
                   st.optimizer_bytes, st.step_cost(), st.cached_step_cost(), st.cache.layers,
                   cache_bytes(st.cache, summary_->cache_samples, summary_->seq_len)});
  return out;
}

std::vector<Diagnostic> PlanReport::distributed_warnings() const {
  return summary_->distributed ? *summary_->distributed : std::vector<Diagnostic>{};
}

std::string Plan::text(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return report(optimizer, horizon).text();
}

std::string Plan::markdown(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return report(optimizer, horizon).markdown();
}

std::string Plan::json(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return report(optimizer, horizon).json();
}

std::string Plan::svg(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return report(optimizer, horizon).svg();
}

std::string Plan::html(OptimizerKind optimizer, std::optional<Time> horizon) const {
  return report(optimizer, horizon).html();
}

std::optional<std::string> Plan::explain(const std::string& name, const Time& t,
                                         std::optional<Time> horizon) const {
  auto i = impl_->inventory->find(name);
  if (!i) return std::nullopt;
  return explain_text(*impl_, *i, t, horizon ? *horizon : impl_->horizon());
}

std::optional<Plan> compile(const Strategy& strategy, Inventory model, const PlanOptions& options,
                            Diagnostics& diags) {
  auto compiled = compile(PlanAccess::def(strategy), std::move(model), options, diags);
  if (!compiled) return std::nullopt;
  return PlanAccess::plan(std::make_shared<const CompiledPlan>(std::move(*compiled)));
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
  const CompiledPlan &ca = PlanAccess::compiled(a), &cb = PlanAccess::compiled(b);
  std::string text = diff_text(ca, cb, horizon ? *horizon : ca.horizon(), &states_differ);
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

std::string diff_svg(const Plan& a, const Plan& b, const std::string& name_a,
                     const std::string& name_b, std::optional<Time> horizon) {
  const CompiledPlan &ca = PlanAccess::compiled(a), &cb = PlanAccess::compiled(b);
  const DiffGrids grids = diff_grids(ca, cb, horizon ? *horizon : ca.horizon());
  using Kind = PlanDiff::Item::Kind;
  std::vector<std::string> also;
  for (const auto& i : diff(a, b).items)
    if (i.kind != Kind::kState && i.kind != Kind::kSchedule)
      also.push_back(i.where + ": " + i.what);
  return layerfreeze::diff_svg(grids, ca, cb, name_a, name_b, nullptr, also);
}

std::string diff_html(const Plan& a, const Plan& b, const std::string& name_a,
                      const std::string& name_b, const std::string& text,
                      std::optional<Time> horizon) {
  const CompiledPlan &ca = PlanAccess::compiled(a), &cb = PlanAccess::compiled(b);
  const DiffGrids grids = diff_grids(ca, cb, horizon ? *horizon : ca.horizon());
  return layerfreeze::diff_html(grids, ca, cb, name_a, name_b, text);
}

}  // namespace layerfreeze
