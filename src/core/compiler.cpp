#include "core/compiler.hpp"
#include "core/selector_resolver.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "core/layer_discovery.hpp"
#include "core/rules_parser.hpp"

namespace layerfreeze {

namespace {

std::string names_list(const Inventory& inv, const std::vector<uint32_t>& idx, size_t max = 5) {
  std::string s;
  for (size_t i = 0; i < idx.size() && i < max; ++i)
    s += (i ? ", " : "") + inv.params()[idx[i]].name;
  if (idx.size() > max) s += ", … (" + std::to_string(idx.size()) + " in all)";
  return s;
}

// Notes that explain why a selector matched nothing on this model.
std::vector<std::string> empty_match_notes(const Selector& s, const Inventory& inv) {
  std::vector<std::string> notes;
  if (s.kind == Selector::Kind::kRole && s.role == Role::kEmbeddings && !inv.stacks.empty() &&
      inv.stacks[0].container == "features")
    notes.push_back(
        "torchvision's features.N models have no embeddings: every features.N is a layer");
  else if (s.kind == Selector::Kind::kRole)
    notes.push_back(inv.facts().source + " has no parameter with role '" + role_name(s.role) + "'");
  if (s.kind == Selector::Kind::kModuleType &&
      std::all_of(inv.params().begin(), inv.params().end(),
                  [](const Param& p) { return p.module_type.empty(); }))
    notes.push_back(
        inv.facts().source +
        " records no module types (a safetensors header has none); select by name instead");
  return notes;
}

// Progressive group keys below the embeddings (-1): the connectors, then each tower, the first
// tower lowest; kLooseKey: a parameter outside every group.
constexpr int32_t kConnectorKey = -2;
constexpr int32_t kLooseKey = std::numeric_limits<int32_t>::min();
int32_t tower_key(int32_t tower) { return -1000000 + tower; }

std::string group_name(const Inventory& inv, int32_t key) {
  if (key == -1) return "embeddings";
  if (key == kConnectorKey) return inv.connectors.size() == 1 ? "connector" : "connectors";
  if (key < kConnectorKey) {
    const Tower& t = inv.towers[static_cast<size_t>(key + 1000000)];
    return t.modality + " tower '" + t.root + "'";
  }
  if (key == inv.num_layers()) return "head";
  return std::to_string(key);
}

// Progressive groups in data-flow order, keyed: each tower (one group), the connectors (one
// group), the embeddings (-1), the trunk's layers (an `other` parameter with the layer it opens
// with), the head (L). So a progressive stage over `all`, top-down, opens the head first and the
// embeddings last (ULMFiT), then the connectors and the towers. Parameters in no group go to
// `loose`.
std::map<int32_t, std::vector<uint32_t>> progressive_groups(const Inventory& I, const Bitset& sel,
                                                            std::vector<uint32_t>* loose) {
  std::map<int32_t, std::vector<uint32_t>> by_group;
  sel.for_each([&](size_t i) {
    const Param& p = I.params()[i];
    int32_t key = p.role == Role::kTower        ? tower_key(p.part)
                  : p.role == Role::kConnector  ? kConnectorKey
                  : p.layer >= 0                ? p.layer
                  : p.role == Role::kEmbeddings ? -1
                  : p.role == Role::kHead       ? I.num_layers()
                  : p.anchor_layer >= 0         ? p.anchor_layer
                                                : kLooseKey;
    if (key != kLooseKey)
      by_group[key].push_back(static_cast<uint32_t>(i));
    else
      loose->push_back(static_cast<uint32_t>(i));
  });
  return by_group;
}

// "layers 11, 10, embeddings": the groups a progressive rule opens, for its provenance.
std::string group_list(const std::vector<std::string>& names) {
  auto is_number = [](const std::string& t) {
    return !t.empty() && std::isdigit(static_cast<unsigned char>(t[0]));
  };
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    bool numeric = is_number(names[i]), prev_numeric = i > 0 && is_number(names[i - 1]);
    out += (i ? ", " : "") + std::string(numeric && !prev_numeric ? "layers " : "") + names[i];
  }
  return out;
}

// The plan stages of a progressive stage: groups of `group_size` in the stage's order, one group
// every `span` units from `at` (`every`), or spread evenly over `span` (`over`).
std::vector<PlanStage> expand_progressive(const Stage& st, const Inventory& I,
                                          const std::map<int32_t, std::vector<uint32_t>>& by_group,
                                          int64_t at, int64_t group_size, int64_t span,
                                          const std::string& named) {
  std::vector<int32_t> order;
  for (const auto& [key, _] : by_group) order.push_back(key);
  if (st.top_down) std::reverse(order.begin(), order.end());
  const int64_t n = static_cast<int64_t>(order.size());
  const int64_t G = (n + group_size - 1) / group_size;
  std::map<int64_t, std::vector<int64_t>> groups_at;  // time -> group numbers
  for (int64_t g = 0; g < G; ++g) {
    int64_t d = st.has_every ? g * span : (span == 0 ? 0 : (g * span) / G + 1);
    groups_at[at + d].push_back(g);
  }
  std::vector<PlanStage> out;
  for (const auto& [t, here] : groups_at) {
    PlanStage p;
    p.unit = st.at.unit;
    p.at = t;
    p.loc = st.loc;
    PlanRule pr;
    pr.action = st.action;
    pr.set.leaf = Bitset(I.params().size());
    std::vector<std::string> names;
    for (int64_t g : here)
      for (int64_t k = g * group_size; k < std::min((g + 1) * group_size, n); ++k) {
        for (uint32_t q : by_group.at(order[k])) pr.set.leaf.set(q);
        names.push_back(group_name(I, order[k]));
      }
    std::string groups = here.size() == 1 ? "group " + std::to_string(here[0] + 1)
                                          : "groups " + std::to_string(here.front() + 1) + "–" +
                                                std::to_string(here.back() + 1);
    p.label = "progressive" + named + " " + groups + "/" + std::to_string(G) + " at " +
              unit_name(p.unit) + " " + std::to_string(t);
    pr.prov = {std::string(action_name(st.action)) + " " + group_list(names) + " (progressive " +
                   groups + " of " + std::to_string(G) + ")",
               st.loc};
    p.rules.push_back(std::move(pr));
    out.push_back(std::move(p));
  }
  return out;
}

class Compiler {
 public:
  Compiler(const StrategyDef& s, const PlanOptions& o, Diagnostics& d) : s_(s), o_(o), diags_(d) {}

  std::optional<CompiledPlan> run(Inventory inv) {
    size_t errors_before = diags_.count(Severity::kError);
    auto scope = bind_params(s_, o_.sets, o_.values, diags_);
    if (!scope) return std::nullopt;
    DiscoveryPatterns patterns =
        DiscoveryPatterns::shipped().merged(s_.discovery, s_.discovery_replace);
    // What reading the model said, then what discovery says with this strategy's patterns:
    // both belong to the plan (every view shows them), and --strict refuses them.
    std::vector<Diagnostic> model_warnings = inv.facts().warnings;
    {
      Diagnostics found;
      discover_layers(inv, patterns, found);
      for (auto d : found.items()) {
        if (d.severity == Severity::kWarning) model_warnings.push_back(d);
        if (d.severity == Severity::kWarning && o_.strict) d.severity = Severity::kError;
        diags_.add(std::move(d));
      }
    }
    if (o_.strict)
      for (size_t k = 0; k < inv.facts().warnings.size(); ++k) {
        Diagnostic d = inv.facts().warnings[k];
        d.severity = Severity::kError;
        d.notes.push_back("--strict: what reading the model warns about is an error");
        diags_.add(std::move(d));
      }
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;

    CompiledPlan plan;
    plan.inventory = std::make_shared<const Inventory>(std::move(inv));
    const Inventory& I = *plan.inventory;
    plan.name = s_.name;
    plan.origin = s_.origin;
    plan.description = s_.description;
    plan.params = *scope;
    scope_ = &plan.params;
    plan.slices.build(I);
    Resolver res(I, plan.slices, *scope, diags_);
    std::set<std::string> callers;  // what the caller bound: `--set`, PlanOptions::values
    for (const auto& kv : o_.sets) callers.insert(kv.substr(0, kv.find('=')));
    for (const auto& kv : o_.values) callers.insert(kv.first);
    res.trust_parameters(std::move(callers));
    inv_ = &I;
    for (size_t i = 0; i < I.params().size(); ++i)
      if (!I.params()[i].aliases.empty()) tied_.push_back(static_cast<uint32_t>(i));
    options(plan, res);

    // Every selector of the strategy, once.
    std::vector<const Selector*> roots;
    for (const auto& r : s_.rules) roots.push_back(&r.selector);
    for (const auto& st : s_.stages) {
      for (const auto& r : st.rules) roots.push_back(&r.selector);
      if (st.kind == Stage::Kind::kProgressive) roots.push_back(&st.selector);
    }
    // Pass 1 collects every regex so one RE2::Set per case mode matches all names once.
    for (const Selector* sel : roots) res.collect(*sel);
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;
    res.match_all();
    // Row selectors cut the tensors they name into rows: the slice table grows before any rule
    // is resolved, so every set has one size.
    res.add_row_tensors(roots, plan.slices);
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;

    // A multi-token-prediction block starts frozen: the model's forward does not run it, so
    // training it is a choice a rule makes by naming `mtp` (docs/RULES.md).
    if (res.role_set(Role::kMtp).any()) {
      PlanRule start;
      start.action = Action::kFreeze;
      start.set.leaf = res.role_set(Role::kMtp);
      start.prov = {"freeze mtp (multi-token prediction: the forward does not run it)",
                    {"discovery", 0, 0}};
      plan.initial.push_back(std::move(start));
    }
    for (const auto& r : s_.rules)
      if (auto pr = rule(r, res)) {
        if (!pr->set.is_static()) not_periodic(*pr, r.loc, "it is not in a stage");
        plan.initial.push_back(std::move(*pr));
      }
    size_t file_order = 0;
    std::vector<std::pair<size_t, PlanStage>> staged;
    for (const auto& st : s_.stages) {
      if (!res.eval_bool(st.when, true)) continue;
      for (auto& ps : stage(st, res, plan)) staged.push_back({file_order++, std::move(ps)});
    }
    for (auto& [order, ps] : staged) {
      (ps.unit == Trigger::Unit::kEpoch ? plan.uses_epochs : plan.uses_steps) = true;
      ps.file_order = static_cast<uint32_t>(order);
    }
    if (plan.uses_epochs && plan.uses_steps && !plan.options.steps_per_epoch) {
      SourceLoc at;
      for (auto& [_, ps] : staged)
        if (ps.unit == Trigger::Unit::kStep) {
          at = ps.loc;
          break;
        }
      diags_.error("needs-steps-per-epoch",
                   "this strategy mixes epoch and step triggers, so it needs the number of "
                   "steps per epoch to order them",
                   at, {"pass --steps-per-epoch N, or set options: steps_per_epoch"});
    }
    int64_t spe = plan.options.steps_per_epoch.value_or(1);
    for (auto& [_, ps] : staged)
      ps.key = ps.unit == Trigger::Unit::kEpoch && plan.uses_steps ? ps.at * spe : ps.at;
    std::stable_sort(staged.begin(), staged.end(), [](const auto& a, const auto& b) {
      return a.second.key != b.second.key ? a.second.key < b.second.key : a.first < b.first;
    });
    for (auto& [_, ps] : staged) {
      if (ps.watch >= 0)
        plan.watched.push_back(std::move(ps));  // by time first: put back in file order below
      else
        plan.stages.push_back(std::move(ps));
    }
    std::sort(plan.watched.begin(), plan.watched.end(),
              [](const PlanStage& a, const PlanStage& b) { return a.file_order < b.file_order; });
    sequence_watches(plan);
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;

    plan.warnings = std::move(model_warnings);
    plan.finalize();
    warnings(plan);
    if (diags_.count(Severity::kError) > errors_before) return std::nullopt;
    return plan;
  }

 private:
  void options(CompiledPlan& plan, Resolver& res) {
    plan.options.batchnorm = s_.options.batchnorm;
    plan.options.frozen_prefix = s_.options.frozen_prefix;
    plan.options.optimizer_state = s_.options.optimizer_state;
    if (auto v = res.eval_number(s_.options.unfreeze_lr_scale, "'unfreeze_lr_scale'"))
      plan.options.unfreeze_lr_scale = *v;
    if (auto v = res.eval_number(s_.options.lr_decay, "'lr_decay'")) plan.options.lr_decay = *v;
    if (auto v = res.eval_int(s_.options.steps_per_epoch, "'steps_per_epoch'")) {
      if (*v < 1)
        diags_.error("out-of-range", "steps_per_epoch must be at least 1",
                     s_.options.steps_per_epoch.loc());
      else
        plan.options.steps_per_epoch = *v;
    }
    if (o_.steps_per_epoch) {
      if (*o_.steps_per_epoch < 1)
        diags_.error("out-of-range", "--steps-per-epoch must be at least 1", {});
      else
        plan.options.steps_per_epoch = o_.steps_per_epoch;
    }
  }

  // random_layers and block_cycle change per period; outside a periodic stage there is one.
  void not_periodic(const PlanRule& pr, const SourceLoc& loc, const std::string& why) {
    pending_.push_back({Severity::kWarning,
                        "not-periodic",
                        "'" + pr.prov.text + "' varies by period, but " + why +
                            ": it keeps the selection of period 0 throughout",
                        loc,
                        {"put it in a stage with 'every: {steps: K}' (or epochs)"}});
  }

  std::optional<PlanRule> rule(const Rule& r, Resolver& res) {
    if (!res.eval_bool(r.when, true)) return std::nullopt;
    PlanRule pr;
    pr.action = r.action;
    pr.prov = {interpolate(r.text, r.loc), r.loc};
    pr.set = res.resolve(r.selector);
    // A model without towers has nothing for `tower` or `connector` to select, and a strategy
    // written for any model (every preset) names them: no warning for that.
    bool multimodal_only = r.selector.kind == Selector::Kind::kRole &&
                           (r.selector.role == Role::kTower || r.selector.role == Role::kConnector);
    if (pr.set.is_static() && !pr.set.leaf.any() && !pr.set.slices.any() &&
        !(multimodal_only && !inv_->multimodal())) {
      no_match_.push_back({&r.selector, pr.prov});
    }
    if (pr.set.is_static()) {
      for (uint32_t i : tied_) {
        if (!pr.set.leaf.test(i)) continue;
        size_t names = 1 + inv_->params()[i].aliases.size();
        for (size_t k = 0; k < names; ++k)
          if (!res.matches_name(r.selector, i, k)) {
            pr.partial_ties.push_back(i);
            break;
          }
      }
    }
    return pr;
  }

  // A rule's text with its ${...} replaced by their values, for plans a reader can follow.
  std::string interpolate(const std::string& text, const SourceLoc& loc) {
    if (text.find("${") == std::string::npos) return text;
    std::vector<std::string> names;
    for (const auto& [k, _] : *scope_) names.push_back(k);
    Diagnostics quiet;
    Expr e = Expr::parse(text, loc, names, quiet);
    auto v = quiet.has_errors() ? std::nullopt : e.eval(*scope_, quiet);
    if (!v || v->kind != Value::Kind::kString) return text;
    return v->s;
  }

  std::optional<int64_t> trigger_value(const Trigger& t, Resolver& res, bool positive) {
    auto v = res.eval_int(t.value, std::string("'") + unit_name(t.unit) + "'");
    if (!v) return std::nullopt;
    if (*v > (int64_t{1} << 40)) {
      diags_.error("out-of-range",
                   std::string("a trigger must be at most 2^40, got ") + std::to_string(*v), t.loc);
      return std::nullopt;
    }
    if (*v < (positive ? 1 : 0)) {
      diags_.error("out-of-range",
                   std::string("a trigger must be ") + (positive ? "at least 1" : "non-negative") +
                       ", got " + std::to_string(*v),
                   t.loc);
      return std::nullopt;
    }
    return v;
  }

  // A metric trigger, evaluated (its id and sequence are given when every stage is known).
  std::optional<MetricWatch> watch(const MetricTrigger& m, Resolver& res, bool relative,
                                   int64_t anchor, const std::string& label) {
    MetricWatch w;
    w.metric = m.metric;
    if (!m.metric_expr.empty()) {
      auto v = res.eval_strings(m.metric_expr);
      if (v.size() != 1 || !is_metric_name(v[0])) {
        diags_.error("bad-metric",
                     "'plateau' names the metric a trainer reports: a letter or '_', then up to "
                     "127 letters, digits, '_', '.', '/', ':' or '-'" +
                         std::string(v.size() == 1 ? ", not '" + v[0].substr(0, 60) + "'" : ""),
                     m.metric_expr.loc());
        return std::nullopt;
      }
      w.metric = v[0];
    }
    if (w.metric.empty()) return std::nullopt;  // the parser said why
    w.loc = m.loc;
    w.relative = relative;
    w.anchor = anchor;
    w.label = label;
    bool ok = true;
    if (!m.mode.empty()) {
      auto v = res.eval_strings(m.mode);
      if (v.size() != 1 || (v[0] != "min" && v[0] != "max")) {
        diags_.error("bad-value", "'mode' is 'min' (lower is better) or 'max'", m.mode.loc());
        ok = false;
      } else {
        w.maximize = v[0] == "max";
      }
    }
    if (!m.patience.empty()) {
      auto v = res.eval_int(m.patience, "'patience'");
      if (v && (*v < 1 || *v > (int64_t{1} << 40))) {
        diags_.error("out-of-range",
                     "'patience' must be at least 1 (and at most 2^40), got " + std::to_string(*v),
                     m.patience.loc());
        v.reset();
      }
      ok = ok && v;
      if (v) w.patience = *v;
    }
    if (!m.min_delta.empty()) {
      auto v = res.eval_number(m.min_delta, "'min_delta'");
      if (v && !(*v >= 0 && std::isfinite(*v))) {
        diags_.error("out-of-range", "'min_delta' must be a finite number, not negative",
                     m.min_delta.loc());
        v.reset();
      }
      ok = ok && v;
      if (v) w.min_delta = *v;
    }
    for (auto [x, slot, what] : {std::tuple{&m.not_before, &w.not_before, "'not_before'"},
                                 std::tuple{&m.not_after, &w.not_after, "'not_after'"}}) {
      if (x->empty() || res.is_null(*x)) continue;  // null: no bound
      auto v = res.eval_int(*x, what);
      if (v && (*v < 0 || *v > (int64_t{1} << 40))) {
        diags_.error(
            "out-of-range",
            std::string(what) + " must be an epoch from 0 to 2^40, got " + std::to_string(*v),
            x->loc());
        v.reset();
      }
      ok = ok && v;
      if (v) *slot = *v;
    }
    if (ok && w.not_before >= 0 && w.not_after >= 0 && w.not_before > w.not_after) {
      diags_.error("window-empty",
                   "'not_before' (" + std::to_string(w.not_before) + ") is after 'not_after' (" +
                       std::to_string(w.not_after) +
                       "): the stage could never wait for its plateau",
                   m.not_before.loc());
      ok = false;
    }
    if (!ok) return std::nullopt;
    return w;
  }

  std::vector<PlanStage> stage(const Stage& st, Resolver& res, const CompiledPlan& plan) {
    std::vector<PlanStage> out;
    std::string named = st.name.empty() ? "" : " '" + st.name + "'";
    if (st.kind == Stage::Kind::kAt && st.at.metric) {
      PlanStage ps;
      ps.unit = Trigger::Unit::kEpoch;
      ps.loc = st.loc;
      ps.label = "stage" + named + " on " + st.at.metric->metric + " plateau";
      auto w = watch(*st.at.metric, res, false, 0, ps.label);
      if (!w) return out;
      for (const auto& r : st.rules)
        if (auto pr = rule(r, res)) {
          if (!pr->set.is_static()) not_periodic(*pr, r.loc, "its stage has no 'every'");
          ps.rules.push_back(std::move(*pr));
        }
      ps.watch = static_cast<int32_t>(watch_defs_.size());
      watch_defs_.push_back(std::move(*w));
      out.push_back(std::move(ps));
      return with_stage_lr(st, res, std::move(out));
    }
    auto at = trigger_value(st.at, res, false);
    if (!at) return out;
    PlanStage ps;
    ps.unit = st.at.unit;
    ps.at = *at;
    ps.loc = st.loc;
    if (st.kind == Stage::Kind::kAt || st.kind == Stage::Kind::kEvery) {
      if (st.kind == Stage::Kind::kEvery) {
        auto k = trigger_value(st.period, res, true);
        if (!k) return out;
        ps.period = *k;
        ps.label = "every" + named + " " + std::to_string(*k) + " " + unit_name(st.period.unit) +
                   (*k == 1 ? "" : "s");
      } else {
        ps.label = "stage" + named + " at " + unit_name(ps.unit) + " " + std::to_string(ps.at);
      }
      for (const auto& r : st.rules)
        if (auto pr = rule(r, res)) {
          // random_layers and block_cycle change per period: a stage without `every` has one.
          if (ps.period == 0 && !pr->set.is_static())
            not_periodic(*pr, r.loc, "its stage has no 'every'");
          ps.rules.push_back(std::move(*pr));
        }
      out.push_back(std::move(ps));
    } else {
      out = progressive(st, res, plan, *at, named);
    }
    return with_stage_lr(st, res, std::move(out));
  }

  // The group learning rate of what the stage unfreezes, on every stage it expands to.
  std::vector<PlanStage> with_stage_lr(const Stage& st, Resolver& res, std::vector<PlanStage> out) {
    std::optional<double> lr, scale;
    if (!st.lr.empty()) lr = res.eval_number(st.lr, "'lr'");
    if (!st.lr_scale.empty()) scale = res.eval_number(st.lr_scale, "'lr_scale'");
    for (const auto* v : {&lr, &scale})
      if (*v && !(**v > 0)) {
        diags_.error("out-of-range", "a stage's learning rate must be positive", st.loc);
        return {};
      }
    for (auto& p : out) {
      p.group_lr = lr;
      p.group_lr_scale = scale;
      if (lr) p.label += " (new group at lr " + Value::real(*lr).to_string() + ")";
      if (scale) p.label += " (new group at lr ×" + Value::real(*scale).to_string() + ")";
    }
    return out;
  }

  // A progressive stage: the selected parameters in groups (core: progressive_groups), one more
  // group opened (or closed) at a time, every `every` or spread evenly `over` a span.
  std::vector<PlanStage> progressive(const Stage& st, Resolver& res, const CompiledPlan& plan,
                                     int64_t at, const std::string& named) {
    DynamicSet sel = res.resolve(st.selector);
    if (!sel.is_static()) {
      diags_.error("progressive-random",
                   "a progressive stage cannot group random_layers or a block_cycle", st.loc);
      return {};
    }
    const Inventory& I = *plan.inventory;
    for (uint32_t i : plan.slices.params)
      if (plan.slices.count(i, sel.slices) > 0 && !sel.leaf.test(i)) {
        diags_.error(
            "progressive-partial",
            std::string("a progressive stage opens whole tensors, but its selector "
                        "takes only some ") +
                (plan.slices.rows(i) ? "rows of the tensor '" : "experts of the fused tensor '") +
                I.params()[i].name + "'",
            st.loc, {"select whole layers here, and cut experts or rows with a stage's rules"});
        return {};
      }
    std::vector<uint32_t> loose;
    auto by_group = progressive_groups(I, sel.leaf, &loose);
    if (!loose.empty())
      pending_.push_back({Severity::kWarning,
                          "progressive-loose",
                          "progressive stage: " + std::to_string(loose.size()) +
                              " selected parameters are outside every layer and are not "
                              "grouped: " +
                              names_list(I, loose),
                          st.loc,
                          {}});
    if (by_group.empty()) {
      no_match_.push_back({&st.selector, {"progressive " + st.selector.text, st.loc}});
      return {};
    }
    auto gs = res.eval_int(st.group_size, "'group_size'");
    if (!gs) return {};
    if (*gs < 1) {
      diags_.error("out-of-range", "group_size must be at least 1", st.group_size.loc());
      return {};
    }
    const MetricTrigger* plateau = st.has_every && st.period.metric ? &*st.period.metric : nullptr;
    auto span = plateau        ? std::optional<int64_t>(1)
                : st.has_every ? trigger_value(st.period, res, true)
                               : trigger_value(*st.over, res, false);
    if (!span) return {};
    auto out = expand_progressive(st, I, by_group, at, *gs, *span, named);
    // On plateaus: the first group opens at the start, each next one at the metric's next
    // plateau (bounds counted from the previous group's opening).
    for (size_t k = 1; plateau && k < out.size(); ++k) {
      auto w = watch(*plateau, res, true, at, "");
      if (!w) return {};
      std::string& label = out[k].label;
      label = label.substr(0, label.rfind(" at ")) + " on " + w->metric + " plateau";
      w->label = label;
      out[k].watch = static_cast<int32_t>(watch_defs_.size());
      watch_defs_.push_back(std::move(*w));
    }
    for (auto& ps : out)
      for (auto& r : ps.rules) r.set.slices = plan.slices.expand(r.set.leaf);
    return out;
  }

  // Metric stages get their ids (file order) and sequences: the stages that watch one metric,
  // in order, all minimising or all maximising it.
  void sequence_watches(CompiledPlan& plan) {
    std::map<std::string, uint32_t> seq;
    std::vector<const MetricWatch*> first;
    for (size_t id = 0; id < plan.watched.size(); ++id) {
      PlanStage& st = plan.watched[id];
      MetricWatch w = watch_defs_[static_cast<size_t>(st.watch)];
      w.id = static_cast<uint32_t>(id);
      auto [it, fresh] = seq.emplace(w.metric, static_cast<uint32_t>(seq.size()));
      w.sequence = it->second;
      if (fresh) first.push_back(&watch_defs_[static_cast<size_t>(st.watch)]);
      const MetricWatch& head = *first[w.sequence];
      if (!fresh && head.maximize != w.maximize)
        diags_.error(
            "metric-mode",
            "this stage " + std::string(w.maximize ? "maximises" : "minimises") + " '" + w.metric +
                "', an earlier stage on it " + (head.maximize ? "maximises" : "minimises") + " it",
            w.loc,
            {"stages on one metric share its best value: give them one 'mode'",
             "the earlier stage is at " + head.loc.file + ":" + std::to_string(head.loc.line)});
      st.watch = static_cast<int32_t>(id);
      plan.watches.push_back(std::move(w));
    }
  }

  void warnings(CompiledPlan& plan) {
    const Inventory& I = *plan.inventory;
    std::vector<Diagnostic> ws = std::move(pending_);
    for (const auto& [sel, prov] : no_match_) {
      Diagnostic d{Severity::kWarning, "no-match",
                   "'" + prov.text + "' selects no parameter of " + I.facts().source, prov.loc,
                   empty_match_notes(*sel, I)};
      ws.push_back(d);
    }
    // Tied tensors: a rule that changes the state of a shared tensor while naming only some of
    // its names also changes it under the others.
    std::vector<const PlanRule*> order;
    for (const auto& r : plan.initial) order.push_back(&r);
    for (const auto& st : plan.stages)
      if (st.period == 0)
        for (const auto& r : st.rules) order.push_back(&r);
    for (size_t i = 0; i < I.params().size(); ++i) {
      const Param& p = I.params()[i];
      if (p.aliases.empty()) continue;
      bool frozen = false;
      for (const PlanRule* r : order) {
        if (!r->set.is_static() || !r->set.leaf.test(i)) continue;
        bool now = r->action == Action::kFreeze;
        bool partial =
            std::find(r->partial_ties.begin(), r->partial_ties.end(), i) != r->partial_ties.end();
        if (now != frozen && partial) {
          std::string names = "'" + p.name + "'";
          for (const auto& a : p.aliases) names += " = '" + a + "'";
          ws.push_back(
              {Severity::kWarning,
               "tied-conflict",
               "'" + r->prov.text + "' " + (now ? "freezes" : "unfreezes") + " the tied tensor " +
                   names +
                   " through only some of its names; every name follows, since it is one tensor",
               r->prov.loc,
               {"the last rule that selects any of its names decides its state"}});
        }
        frozen = now;
      }
    }
    std::vector<uint32_t> other_idx;
    for (size_t i = 0; i < I.params().size(); ++i)
      if (I.params()[i].role == Role::kOther) other_idx.push_back(static_cast<uint32_t>(i));
    if (!other_idx.empty() && !I.layers.empty()) {
      Diagnostic d;
      d.severity = Severity::kWarning;
      d.code = "other-params";
      d.message =
          std::to_string(other_idx.size()) +
          (other_idx.size() == 1 ? " parameter has" : " parameters have") +
          " role 'other' (outside layers, embeddings and head): " + names_list(I, other_idx);
      d.notes.push_back("select them with `other`, by name, or give them a role with `discovery:`");
      ws.push_back(std::move(d));
    }
    for (auto& w : ws) {
      if (o_.strict) w.severity = Severity::kError;
      diags_.add(w);
      if (w.severity == Severity::kWarning) plan.warnings.push_back(w);
    }
  }

  const StrategyDef& s_;
  const PlanOptions& o_;
  Diagnostics& diags_;
  std::vector<std::pair<const Selector*, Provenance>> no_match_;
  std::vector<Diagnostic> pending_;  // warnings found while compiling, for warnings()
  const Inventory* inv_ = nullptr;
  const Scope* scope_ = nullptr;
  std::vector<uint32_t> tied_;
  std::vector<MetricWatch> watch_defs_;  // by PlanStage::watch until sequence_watches
};

}  // namespace

std::optional<CompiledPlan> compile(const StrategyDef& s, Inventory inv, const PlanOptions& opts,
                                    Diagnostics& diags) {
  return Compiler(s, opts, diags).run(std::move(inv));
}

}  // namespace layerfreeze
