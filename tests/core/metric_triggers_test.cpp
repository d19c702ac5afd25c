// Metric triggers (core/metric_triggers.hpp, issue 28): the DSL and its errors, the monitor's
// arithmetic (Lightning's EarlyStopping, as the finetuning-scheduler's phases use it), windows,
// placement, the monitor's saved state, dry runs (--assume, a recorded history) and the plan's
// identity.
#include <cmath>

#include "core/metric_triggers.hpp"
#include "core/plan.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace metric_triggers_test {

using test::builtin;
using test::compile_text;

const std::string kTwoPlateaus = R"(layerfreeze: 1
name: plateaus
rules:
  - freeze: all
  - unfreeze: head
stages:
  - name: top
    at: {plateau: val_loss, patience: 2, not_after: 6}
    rules:
      - unfreeze: {layers: "-4:"}
  - name: rest
    at: {plateau: val_loss, patience: 2, min_delta: 0.01}
    rules:
      - unfreeze: all
)";

MetricWatch watch(uint32_t id, int64_t patience, int64_t not_after = -1, double min_delta = 0) {
  MetricWatch w;
  w.id = id;
  w.metric = "val_loss";
  w.patience = patience;
  w.not_after = not_after;
  w.min_delta = min_delta;
  return w;
}

struct BadStage {
  std::string stage;  // one stage's YAML, indented under `stages:`
  std::string code;
};

TEST(MetricTriggers, BadTriggersAreErrorsAtTheirPlace) {
  const std::vector<BadStage> cases = {
      {"  - at: {plateau: val_loss, patience: 0}\n    rules: [{unfreeze: all}]\n", "out-of-range"},
      {"  - at: {plateau: val_loss, min_delta: -0.1}\n    rules: [{unfreeze: all}]\n",
       "out-of-range"},
      {"  - at: {plateau: val_loss, mode: maximum}\n    rules: [{unfreeze: all}]\n", "bad-value"},
      {"  - at: {plateau: \"val loss\"}\n    rules: [{unfreeze: all}]\n", "bad-metric"},
      {"  - at: {plateau: val_loss, patiense: 2}\n    rules: [{unfreeze: all}]\n", "unknown-key"},
      {"  - at: {plateau: val_loss, not_before: 5, not_after: 3}\n    rules: [{unfreeze: all}]\n",
       "window-empty"},
      {"  - at: {plateau: val_loss, not_after: -1}\n    rules: [{unfreeze: all}]\n",
       "out-of-range"},
      {"  - every: {plateau: val_loss}\n    rules: [{unfreeze: all}]\n", "bad-trigger"},
      {"  - progressive: {unfreeze: layers, start: {plateau: val_loss}, every: {epochs: 1}}\n",
       "bad-trigger"},
      {"  - at: {plateau: acc, mode: max}\n    rules: [{unfreeze: head}]\n"
       "  - at: {plateau: acc}\n    rules: [{unfreeze: all}]\n",
       "metric-mode"},
  };
  for (const auto& c : cases) {
    auto r = compile_text("layerfreeze: 1\nname: t\nrules:\n  - freeze: all\nstages:\n" + c.stage,
                          builtin("llama2-7b"));
    ASSERT_FALSE(r.plan) << c.stage;
    bool found = false;
    for (const auto& d : r.diags.items()) found = found || d.code == c.code;
    EXPECT_TRUE(found) << c.stage << "\n" << r.errors();
    for (const auto& d : r.diags.items()) EXPECT_GT(d.loc.line, 0) << c.stage << r.errors();
  }
}

TEST(MetricTriggers, ParametersReachTheTrigger) {
  auto r = compile_text(
      "layerfreeze: 1\nname: t\nparams:\n  p: {type: int, default: 4}\n  m: {type: string, "
      "default: max}\nrules:\n  - freeze: all\nstages:\n  - at: {plateau: acc, patience: "
      "\"${p}\", mode: \"${m}\", not_after: 9}\n    rules: [{unfreeze: all}]\n",
      builtin("llama2-7b"), {"p=5"});
  ASSERT_TRUE(r.plan) << r.errors();
  ASSERT_EQ(r.plan->watches.size(), 1u);
  EXPECT_EQ(r.plan->watches[0].patience, 5);
  EXPECT_TRUE(r.plan->watches[0].maximize);
  EXPECT_EQ(r.plan->watches[0].not_after, 9);
}

TEST(MetricTriggers, ThePlanPlacesEachStageAtItsLatestAndShowsItsWindow) {
  auto r = compile_text(kTwoPlateaus, builtin("llama2-7b"));
  ASSERT_TRUE(r.plan) << r.errors();
  const CompiledPlan& p = *r.plan;
  auto views = p.metric_stages();
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[0].window_text(), "epochs 1–6");
  EXPECT_EQ(views[0].placement(), "at epoch 6 at the latest (no plateau given)");
  EXPECT_EQ(views[1].window_text(), "from epoch 2, no bound");
  EXPECT_EQ(views[1].placement(), "waits for a plateau (no not_after)");
  // On the timeline: the first at 6, the second nowhere.
  ASSERT_EQ(p.stages.size(), 1u);
  EXPECT_EQ(p.stages[0].at, 6);
  // Placed where a run fired them: same identity, another timeline.
  CompiledPlan q = p.placed({{0, 3, true}, {1, 5, true}});
  EXPECT_EQ(q.fingerprint(), p.fingerprint());
  EXPECT_EQ(q.canonical(), p.canonical());
  ASSERT_EQ(q.stages.size(), 2u);
  EXPECT_EQ(q.stages[0].at, 3);
  EXPECT_EQ(q.stages[1].at, 5);
  EXPECT_EQ(q.frozen_at({4, 0}).count() + 0, p.frozen_at({6, 0}).count());
  EXPECT_EQ(q.frozen_at({5, 0}).count(), 0u);
}

TEST(MetricTriggers, TheTriggerIsPartOfTheFingerprint) {
  auto base = compile_text(kTwoPlateaus, builtin("llama2-7b"));
  ASSERT_TRUE(base.plan);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"patience: 2, not_after", "patience: 3, not_after"},
           {"min_delta: 0.01", "min_delta: 0.02"},
           {"not_after: 6", "not_after: 7"},
           {"plateau: val_loss, patience: 2, min_delta",
            "plateau: val_acc, patience: 2, min_delta"},
           {"patience: 2, min_delta: 0.01", "patience: 2, min_delta: 0.01, not_before: 3"}}) {
    std::string yaml = kTwoPlateaus;
    ASSERT_NE(yaml.find(from), std::string::npos) << from;
    yaml.replace(yaml.find(from), from.size(), to);
    auto changed = compile_text(yaml, builtin("llama2-7b"));
    ASSERT_TRUE(changed.plan) << changed.errors();
    EXPECT_NE(changed.plan->fingerprint(), base.plan->fingerprint()) << to;
    // And the diff names what changed.
    auto d = diff(PlanAccess::plan(std::make_shared<const CompiledPlan>(*base.plan)),
                  PlanAccess::plan(std::make_shared<const CompiledPlan>(*changed.plan)));
    ASSERT_TRUE(d.differs()) << to;
    EXPECT_NE(d.text().find("metric stage"), std::string::npos) << d.text();
  }
}

TEST(MetricTriggers, TheMonitorIsLightningsEarlyStopping) {
  // patience 2: improvement resets the count; two reports no better than the best fire the
  // stage at the next boundary, not before.
  TriggerMonitor m({watch(0, 2, -1, 0.1)});
  m.boundary(0);
  m.report("val_loss", 1.0);  // best 1.0
  EXPECT_TRUE(m.boundary(1).empty());
  m.report("val_loss", 0.95);  // not better by more than 0.1
  EXPECT_TRUE(m.boundary(2).empty());
  m.report("val_loss", 0.85);  // better by 0.15: best 0.85, count 0
  EXPECT_TRUE(m.boundary(3).empty());
  m.report("val_loss", 0.80);
  m.report("val_loss", 0.76);  // two validations in one epoch: two records
  auto f = m.boundary(4);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].epoch, 4);
  EXPECT_TRUE(f[0].plateau);
  ASSERT_TRUE(f[0].best);  // on which values: the best it could not beat
  EXPECT_EQ(*f[0].best, 0.85);
  EXPECT_NE(m.to_string().find("f=0@4p:0x1.b333333333333p-1"), std::string::npos) << m.to_string();
  // Unwatched and non-finite values.
  EXPECT_EQ(m.report("val_acc", 1.0), TriggerMonitor::Report::kUnwatched);
  EXPECT_EQ(m.report("val_loss", std::nan("")), TriggerMonitor::Report::kNotFinite);
  // max mode
  MetricWatch acc = watch(0, 1);
  acc.metric = "acc";
  acc.maximize = true;
  TriggerMonitor up({acc});
  up.report("acc", 0.5);
  up.report("acc", 0.6);
  EXPECT_TRUE(up.boundary(1).empty());
  up.report("acc", 0.6);
  EXPECT_EQ(up.boundary(2).size(), 1u);
}

TEST(MetricTriggers, ASequenceFiresOneStagePerEpochAndKeepsItsBest) {
  // Three stages on one metric, the first two bounded at 2 and 1 (not increasing, as an FTS
  // schedule may be): one per boundary, never two in one epoch.
  MetricWatch a = watch(0, 5, 2), b = watch(1, 5, 1), c = watch(2, 5, 2);
  TriggerMonitor m({a, b, c});
  std::vector<int64_t> at;
  for (int64_t e = 0; e < 6; ++e)
    for (const auto& f : m.boundary(e)) at.push_back(f.epoch);
  EXPECT_EQ(at, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(watch_positions({a, b, c}, {}), (std::vector<int64_t>{2, 3, 4}));
}

TEST(MetricTriggers, AJumpOfTimeFiresPassedBoundsAtTheirEpochs) {
  TriggerMonitor m({watch(0, 2, 3), watch(1, 2, 5)});
  auto f = m.boundary(9);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].epoch, 3);
  EXPECT_FALSE(f[0].plateau);
  EXPECT_EQ(f[1].epoch, 5);
  EXPECT_TRUE(m.boundary(9).empty());  // each boundary once
}

TEST(MetricTriggers, AJumpIsEveryBoundaryBetweenAtOnce) {
  // Reports in epochs 0, 1, 4, 5, 9 with a boundary every epoch, or only at the reported
  // epochs: the same firings, at the same epochs.
  MetricWatch nb = watch(1, 1, 8);
  nb.not_before = 3;
  const std::vector<MetricWatch> ws = {watch(0, 1, 20), nb, watch(2, 2)};
  const std::vector<std::pair<int64_t, double>> reports = {{0, 1.0}, {1, 1.5}, {4, 0.5},
                                                           {5, 0.7}, {9, 0.9}, {9, 0.95}};
  TriggerMonitor every(ws), jumps(ws);
  int64_t at = -1;
  for (const auto& [e, v] : reports) {
    while (at < e) every.boundary(++at);
    jumps.boundary(e);
    every.report("val_loss", v);
    jumps.report("val_loss", v);
  }
  for (int64_t e = at + 1; e <= 30; ++e) every.boundary(e);
  jumps.boundary(30);
  EXPECT_EQ(every.to_string(), jumps.to_string());
  // Hostile times end at once: a history and an assumption 2^40 epochs out.
  Diagnostics d;
  auto far = parse_metric_history("0 val_loss 1\n1099511627776 val_loss 2\n", "h.txt", d);
  ASSERT_TRUE(far);
  EXPECT_FALSE(replay_history(ws, *far).empty());
  auto late = parse_assumption("val_loss: plateau at epoch 1099511627776", d);
  ASSERT_TRUE(late);
  EXPECT_FALSE(assume_plateaus(ws, {*late}, d).empty());
}

TEST(MetricTriggers, TheSavedStateRestoresExactly) {
  TriggerMonitor m({watch(0, 2), watch(1, 3)});
  m.boundary(0);
  m.report("val_loss", 0.1 + 0.2);  // not exactly representable in decimal
  m.report("val_loss", 0.4);
  m.report("val_loss", 0.5);
  m.boundary(1);
  m.report("val_loss", 0.6);
  const std::string saved = m.to_string();
  TriggerMonitor r({watch(0, 2), watch(1, 3)});
  EXPECT_EQ(r.restore(saved), "");
  EXPECT_EQ(r.to_string(), saved);
  // The same next reports decide the same.
  for (double v : {0.2, 0.7, 0.8, 0.9}) {
    m.report("val_loss", v);
    r.report("val_loss", v);
  }
  EXPECT_EQ(m.boundary(2).size(), r.boundary(2).size());
  EXPECT_EQ(m.to_string(), r.to_string());
  // Refused: unknown tokens, firings out of order, a missing sequence.
  for (const std::string bad : {"b=1 s=0:none:0:0 x=1", "b=1 f=1@1p s=0:none:0:0", "b=1",
                                "b=1 s=0:0x1p+0:0:2", "b=0 f=0@1p s=0:none:0:0"}) {
    TriggerMonitor t({watch(0, 2), watch(1, 3)});
    EXPECT_NE(t.restore(bad), "") << bad;
  }
}

TEST(MetricTriggers, AssumptionsAndHistoriesPlaceTheStages) {
  auto r = compile_text(kTwoPlateaus, builtin("llama2-7b"));
  ASSERT_TRUE(r.plan);
  Diagnostics d;
  auto a = parse_assumption("val_loss: plateaus at epochs 4, 3", d);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->epochs, (std::vector<int64_t>{3, 4}));
  auto fired = assume_plateaus(r.plan->watches, {*a}, d);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0].epoch, 3);
  EXPECT_EQ(fired[1].epoch, 4);
  // Before the window opens: the stage fires when it opens.
  auto early =
      assume_plateaus(r.plan->watches, {*parse_assumption("val_loss: plateau at epoch 0", d)}, d);
  ASSERT_EQ(early.size(), 1u);
  EXPECT_EQ(early[0].epoch, 1);
  for (const std::string bad : {"val_loss plateau at 3", "val_loss: plateau at epoch x",
                                "val_loss: plateau at epochs 1,,2"}) {
    Diagnostics e;
    EXPECT_FALSE(parse_assumption(bad, e)) << bad;
    EXPECT_TRUE(e.has_errors());
  }
  Diagnostics u;
  assume_plateaus(r.plan->watches, {*parse_assumption("val_los: plateau at epoch 2", u)}, u);
  ASSERT_TRUE(u.has_errors());
  EXPECT_EQ(u.items()[0].code, "unknown-metric");
  // A history: the plateau after epoch 3 fires 'top' at 4.
  Diagnostics h;
  auto records = parse_metric_history(
      "# epoch metric value\n0 val_loss 1.0\n1 val_loss 0.9\n2 val_loss 0.95\n3 val_loss 0.93\n",
      "h.txt", h);
  ASSERT_TRUE(records) << format_diagnostics(h);
  auto from_history = replay_history(r.plan->watches, *records);
  ASSERT_EQ(from_history.size(), 1u);
  EXPECT_EQ(from_history[0].epoch, 4);
  for (const std::string bad : {"0 val_loss\n", "x val_loss 1\n", "1 a 1\n0 a 1\n", "0 a 1x\n"}) {
    Diagnostics e;
    EXPECT_FALSE(parse_metric_history(bad, "h.txt", e)) << bad;
    ASSERT_TRUE(e.has_errors());
    EXPECT_EQ(e.items()[0].loc.file, "h.txt");
  }
}

TEST(MetricTriggers, AProgressiveStageOpensOneGroupPerPlateau) {
  auto r = compile_text(R"(layerfreeze: 1
name: t
rules:
  - freeze: all
stages:
  - progressive:
      unfreeze: layers
      every: {plateau: val_loss, patience: 1, not_after: 3}
)",
                        builtin("llama2-7b"));
  ASSERT_TRUE(r.plan) << r.errors();
  const CompiledPlan& p = *r.plan;
  ASSERT_EQ(p.watches.size(), 31u);  // group 1 at the start, 31 on plateaus
  EXPECT_TRUE(p.watches[0].relative);
  // With no plateau: one group every 3 epochs at the latest.
  EXPECT_EQ(p.stages[1].at, 3);
  EXPECT_EQ(p.stages[2].at, 6);
  // Plateaus after epochs 0 and 1: groups 2 and 3 open at 1 and 2, group 4 by 5.
  Diagnostics quiet;
  CompiledPlan q = p.placed(assume_plateaus(p.watches, {{"val_loss", {1, 2}}}, quiet));
  EXPECT_EQ(q.stages[1].at, 1);
  EXPECT_EQ(q.stages[2].at, 2);
  EXPECT_EQ(q.stages[3].at, 5);
}

}  // namespace metric_triggers_test
}  // namespace layerfreeze
