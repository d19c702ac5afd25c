// `layerfreeze import fts`: a finetuning-scheduler explicit schedule as rules. The agreement with
// FTS itself, epoch by epoch, is tests/peers/side_by_side.py; these pin the translation.
#include <gtest/gtest.h>

#include "import/fts_schedule.hpp"
#include "layerfreeze/plan.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

// FTS's epoch_transitions_only: phases end at their max_transition_epoch alone.
FtsImportOptions epoch_only() {
  FtsImportOptions o;
  o.early_stopping.reset();
  return o;
}

std::string errors_of(const std::string& text, const Inventory* model = nullptr,
                      const FtsImportOptions& options = {}) {
  Diagnostics d;
  EXPECT_FALSE(import_fts_schedule(text, "s.yaml", model, d, options));
  std::string out;
  for (const auto& x : d.items())
    out += std::to_string(x.loc.line) + ":" + std::to_string(x.loc.column) + " " + x.code + ": " +
           x.message + "\n";
  return out;
}

TEST(FtsImport, PhasesBecomeStagesAtTheTransitionEpochs) {
  const char* schedule =
      "0:\n  params: [head.3.weight, 'head\\.3\\.b']\n  max_transition_epoch: 1\n"
      "1:\n  params: ['head\\.[01]\\.']\n  lr: 0.05\n  max_transition_epoch: 3\n"
      "2:\n  params: ['backbone.*']\n  new_lr_scheduler: {x: 1}\n  max_transition_epoch: 5\n";
  Diagnostics d;
  auto im = import_fts_schedule(schedule, "s.yaml", nullptr, d, epoch_only());
  ASSERT_TRUE(im) << format_diagnostics(d);
  EXPECT_EQ(im->phases, 3u);
  const std::string& y = im->rules_yaml;
  // Without the model every entry is read as FTS reads one that names no parameter.
  EXPECT_NE(y.find("  - unfreeze: {regex: ['(?:head.3.weight).*', '(?:head\\.3\\.b).*']}   # "
                   "phase 0"),
            std::string::npos)
      << y;
  EXPECT_NE(y.find("  - name: phase 1\n    at: {epoch: 1}\n    lr: 0.05\n"), std::string::npos)
      << y;
  EXPECT_NE(y.find("  - name: phase 2\n    at: {epoch: 3}\n    lr: 1e-05"), std::string::npos) << y;
  ASSERT_GE(im->notes.size(), 2u);
  EXPECT_EQ(im->notes[0],
            "phase 2: 'new_lr_scheduler' is not imported: layerfreeze leaves the optimizer and the "
            "learning-rate scheduler to the trainer");
  // The rules compile, and on a model their timeline is FTS's.
  Inventory inv = test::names_inventory({"backbone.0.weight", "backbone.0.bias", "head.0.weight",
                                         "head.1.weight", "head.3.weight", "head.3.bias"},
                                        "net");
  auto c = test::compile_text(y, inv);
  ASSERT_TRUE(c.plan) << c.errors() << y;
  EXPECT_EQ(test::frozen_names(*c.plan, {0, 0}).size(), 4u);
  EXPECT_EQ(test::frozen_names(*c.plan, {1, 0}).size(), 2u);
  EXPECT_EQ(test::frozen_names(*c.plan, {3, 0}).size(), 0u);
}

TEST(FtsImport, EarlyStoppingPhasesBecomeMetricStagesBoundedByTheirTransitionEpochs) {
  // FTS's default: FTSEarlyStopping (val_loss, min, patience 3) ends each phase, its
  // max_transition_epoch at the latest.
  const char* schedule =
      "0:\n  params: [head]\n  max_transition_epoch: 4\n1:\n  params: [mid]\n  lr: 0.05\n"
      "2:\n  params: [low]\n";
  Diagnostics d;
  auto im = import_fts_schedule(schedule, "s.yaml", nullptr, d);
  ASSERT_TRUE(im) << format_diagnostics(d);
  const std::string& y = im->rules_yaml;
  EXPECT_NE(y.find("  - name: phase 1\n    at: {plateau: 'val_loss', mode: min, patience: 3, "
                   "not_after: 4}\n    lr: 0.05\n"),
            std::string::npos)
      << y;
  EXPECT_NE(y.find("  - name: phase 2\n    at: {plateau: 'val_loss', mode: min, patience: 3}\n"),
            std::string::npos)
      << y;
  // Another monitor, mode, patience and min_delta (FTSEarlyStopping's configuration).
  FtsImportOptions o;
  o.early_stopping = FtsEarlyStopping{"val_acc", true, 2, 0.01};
  auto acc = import_fts_schedule(schedule, "s.yaml", nullptr, d, o);
  ASSERT_TRUE(acc);
  EXPECT_NE(acc->rules_yaml.find("at: {plateau: 'val_acc', mode: max, patience: 2, min_delta: "
                                 "0.01, not_after: 4}"),
            std::string::npos)
      << acc->rules_yaml;
  // Compiled on a model: one sequence on the monitor, phase 1 by epoch 4, phase 2 open.
  Inventory inv = test::names_inventory({"low.w", "mid.w", "head.w"}, "net");
  auto c = test::compile_text(y, inv);
  ASSERT_TRUE(c.plan) << c.errors() << y;
  auto views = c.plan->metric_stages();
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[0].window_text(), "epochs 1–4");
  EXPECT_EQ(views[1].placement(), "waits for a plateau (no not_after)");
}

TEST(FtsImport, ALightningConfigGivesTheEarlyStoppingSettings) {
  const char* cfg =
      "trainer:\n  callbacks:\n"
      "    - class_path: finetuning_scheduler.FinetuningScheduler\n"
      "      init_args: {ft_schedule: s.yaml, base_max_lr: 0.002}\n"
      "    - class_path: finetuning_scheduler.FTSEarlyStopping\n"
      "      init_args: {monitor: val_acc, mode: max, patience: 2, min_delta: -0.01}\n";
  Diagnostics d;
  auto o = read_lightning_config(cfg, "c.yaml", {}, d);
  ASSERT_TRUE(o) << format_diagnostics(d);
  ASSERT_TRUE(o->early_stopping);
  EXPECT_EQ(o->early_stopping->monitor, "val_acc");
  EXPECT_TRUE(o->early_stopping->maximize);
  EXPECT_EQ(o->early_stopping->patience, 2);
  EXPECT_DOUBLE_EQ(o->early_stopping->min_delta, 0.01);
  EXPECT_DOUBLE_EQ(o->base_max_lr, 0.002);
  auto eto = read_lightning_config(
      "trainer:\n  callbacks:\n    - class_path: finetuning_scheduler.FinetuningScheduler\n"
      "      init_args: {epoch_transitions_only: true}\n",
      "c.yaml", {}, d);
  ASSERT_TRUE(eto);
  EXPECT_FALSE(eto->early_stopping);
  Diagnostics e;
  EXPECT_FALSE(read_lightning_config(
      "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
      "      init_args: {patience: 0.5}\n",
      "c.yaml", {}, e));
  ASSERT_TRUE(e.has_errors());
  EXPECT_EQ(e.items()[0].loc.line, 4);
  Diagnostics f;
  EXPECT_FALSE(read_lightning_config("model: {}\n", "c.yaml", {}, f));
}

TEST(FtsImport, WithAModelOnlyItsNamesAreNames) {
  // `head.0` names no parameter of this model, so FTS reads it as a regex (a prefix) and thaws
  // what it selects: with the model, those names exactly.
  Inventory inv = test::names_inventory({"head.0.weight", "head.0.bias"}, "net");
  Diagnostics d;
  auto im = import_fts_schedule("0:\n  params: [head.0]\n", "s.yaml", &inv, d);
  ASSERT_TRUE(im) << format_diagnostics(d);
  EXPECT_NE(im->rules_yaml.find("{regex: ['head\\.0\\.weight', 'head\\.0\\.bias']}"),
            std::string::npos)
      << im->rules_yaml;
  // Without it, a name-like prefix is a prefix too (it used to be taken as an exact name that
  // no parameter has, and never thawed).
  auto bare = import_fts_schedule("0:\n  params: [ln_f]\n", "s.yaml", nullptr, d);
  ASSERT_TRUE(bare);
  EXPECT_NE(bare->rules_yaml.find("'(?:ln_f).*'"), std::string::npos) << bare->rules_yaml;
  Inventory gpt = test::names_inventory({"h.0.w", "ln_f.weight", "ln_f.bias"}, "net");
  auto c = test::compile_text(bare->rules_yaml, gpt);
  ASSERT_TRUE(c.plan) << c.errors();
  EXPECT_EQ(test::frozen_names(*c.plan), std::vector<std::string>{"h.0.w"});
}

// What FTS does differently from what the import did (issue 28), each pinned.
TEST(FtsImport, TiedAliasesAreNotNamesToFts) {
  // FTS matches named_parameters(): a tied tensor's first name. `lm_head.weight` (the alias) in
  // phase 0 is dropped with a note; the tensor thaws with phase 1, which names `embed.weight`.
  Inventory inv = test::names_inventory({"embed.weight", "h.0.w", "head.b"}, "net");
  inv =
      test::with_facts(inv, [](FactsBuilder& b) { b.add_alias("embed.weight", "lm_head.weight"); });
  Diagnostics d;
  auto im = import_fts_schedule(
      "0:\n  params: [lm_head.weight, head.b]\n  max_transition_epoch: 1\n"
      "1:\n  params: [embed.weight, 'h\\.0']\n  lr: 0.01\n",
      "s.yaml", &inv, d);
  ASSERT_TRUE(im) << format_diagnostics(d);
  bool noted = false;
  for (const auto& n : im->notes)
    noted = noted || n.find("'lm_head.weight' selects only") == 0 ||
            n.find("'lm_head.weight' selects only") != std::string::npos;
  EXPECT_TRUE(noted);
  auto c = test::compile_text(im->rules_yaml, inv);
  ASSERT_TRUE(c.plan) << c.errors() << im->rules_yaml;
  EXPECT_EQ(test::frozen_names(*c.plan, {0, 0}),
            (std::vector<std::string>{"embed.weight", "h.0.w"}));
  EXPECT_TRUE(test::frozen_names(*c.plan, {1, 0}).empty());
}

TEST(FtsImport, NonIncreasingTransitionsMoveOnePhaseAnEpoch) {
  // max_transition_epoch 2, 1, 2, 6: FTS moves one phase per epoch — phases 1..4 start at
  // epochs 2, 3, 4 and 6 (not three of them at epoch 2).
  Diagnostics d;
  auto im = import_fts_schedule(
      "0:\n  params: [a]\n  max_transition_epoch: 2\n1:\n  params: [b]\n  max_transition_epoch: "
      "1\n2:\n  params: [c]\n  max_transition_epoch: 2\n3:\n  params: [d]\n  "
      "max_transition_epoch: 6\n4:\n  params: [e]\n  max_transition_epoch: 8\n",
      "s.yaml", nullptr, d, epoch_only());
  ASSERT_TRUE(im) << format_diagnostics(d);
  for (const char* want : {"phase 1\n    at: {epoch: 2}", "phase 2\n    at: {epoch: 3}",
                           "phase 3\n    at: {epoch: 4}", "phase 4\n    at: {epoch: 6}"})
    EXPECT_NE(im->rules_yaml.find(want), std::string::npos) << want << "\n" << im->rules_yaml;
  // With early stopping and no plateau, the metric stages land on the same epochs.
  auto es = import_fts_schedule(
      "0:\n  params: [a]\n  max_transition_epoch: 2\n1:\n  params: [b]\n  max_transition_epoch: "
      "1\n2:\n  params: [c]\n  max_transition_epoch: 2\n3:\n  params: [d]\n  "
      "max_transition_epoch: 6\n4:\n  params: [e]\n",
      "s.yaml", nullptr, d);
  ASSERT_TRUE(es) << format_diagnostics(d);
  auto c = test::compile_text(es->rules_yaml,
                              test::names_inventory({"a.w", "b.w", "c.w", "d.w", "e.w"}, "net"));
  ASSERT_TRUE(c.plan) << c.errors() << es->rules_yaml;
  std::vector<int64_t> at;
  for (const auto& v : c.plan->metric_stages()) at.push_back(v.at);
  EXPECT_EQ(at, (std::vector<int64_t>{2, 3, 4, 6}));
}

TEST(FtsImport, WhatFtsRefusesIsRefused) {
  Inventory inv = test::names_inventory({"a.w", "b.w", "c.w"}, "net");
  // Overlapping phases.
  EXPECT_EQ(errors_of("0:\n  params: ['a\\..*']\n  max_transition_epoch: 1\n1:\n  params: "
                      "['.*w']\n",
                      &inv),
            "5:3 fts-overlap: phase 1 thaws 'a.w', which phase 0 thaws already: FTS refuses "
            "phases that are not disjoint\n");
  // An entry that matches nothing.
  EXPECT_EQ(errors_of("0:\n  params: ['z\\.']\n", &inv),
            "2:12 fts-unmatched: phase 0: 'z\\.' selects no parameter of the model\n");
  // Patterns Python's re and RE2 read differently, or that only RE2 accepts.
  EXPECT_EQ(errors_of("0:\n  params: ['fc[0-9]{,1}']\n"),
            "2:12 fts-regex: 'fc[0-9]{,1}': '{,1}' is a repetition of 0 to 1 to Python's re and "
            "literal text to RE2\n");
  EXPECT_EQ(errors_of("0:\n  params: ['[[:alpha:]]+']\n"),
            "2:12 fts-regex: '[[:alpha:]]+': '[:' inside a character class is a POSIX class to "
            "RE2 ([[:alpha:]]) and plain characters to Python's re\n");
  EXPECT_EQ(errors_of("0:\n  params: ['\\pL+']\n"),
            "2:12 fts-regex: '\\pL+': '\\p' is an escape of RE2's that Python's re refuses (FTS "
            "could not run it)\n");
  // `{0,1}`, `{2,}` and `[a-z]` mean the same to both.
  Diagnostics d;
  EXPECT_TRUE(import_fts_schedule("0:\n  params: ['fc[0-9]{0,1}', 'x{2,}', '[a-z]']\n", "s.yaml",
                                  nullptr, d))
      << format_diagnostics(d);
}

TEST(FtsImport, QuotedPhaseKeysAreNumbersAsToFts) {
  Diagnostics d;
  auto im = import_fts_schedule(
      "'0':\n  params: [a]\n  max_transition_epoch: 1\n'1':\n  params: [b]\n"
      "  max_transition_epoch: 3\n",
      "s.yaml", nullptr, d, epoch_only());
  ASSERT_TRUE(im) << format_diagnostics(d);
  EXPECT_EQ(im->phases, 2u);
  EXPECT_NE(im->rules_yaml.find("phase 1\n    at: {epoch: 1}"), std::string::npos);
}

TEST(FtsImport, WhatCannotBeImportedIsAnErrorAtItsLine) {
  EXPECT_EQ(errors_of("0:\n  params: [a]\n1:\n  params: [b]\n", nullptr, epoch_only()),
            "2:3 fts-not-importable: phase 0 has no max_transition_epoch, which FTS requires of "
            "every phase under epoch_transitions_only\n"
            "4:3 fts-not-importable: phase 1 has no max_transition_epoch, which FTS requires of "
            "every phase under epoch_transitions_only\n");
  EXPECT_EQ(
      errors_of("0:\n  params: ['(?=x)y']\n"),
      "2:12 fts-schedule: '(?=x)y' is not a regex RE2 accepts (invalid perl operator: (?=)\n");
  EXPECT_EQ(errors_of("0:\n  params: [a]\n  max_transition_epoch: 1\n2:\n  params: [b]\n"),
            "5:3 fts-schedule: phase 2 follows phase 0: FTS phases are numbered without gaps\n");
  EXPECT_EQ(errors_of("first:\n  params: [a]\n"),
            "1:1 fts-schedule: a phase is numbered 0, 1, 2, …, not 'first'\n");
  EXPECT_EQ(errors_of("- 0\n"),
            "1:1 fts-schedule: an FTS schedule is a map of phase numbers to phases, not a list\n");
  EXPECT_EQ(errors_of("0:\n  parms: [a]\n"),
            "2:3 unknown-key: unknown key 'parms' in phase 0 — did you mean 'params'?\n");
  EXPECT_EQ(errors_of("0:\n  params: a\n"),
            "2:11 fts-schedule: 'params' is a list of parameter names or regexes\n");
}

}  // namespace
}  // namespace layerfreeze
