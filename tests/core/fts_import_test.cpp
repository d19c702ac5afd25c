// `layerfreeze import fts`: a finetuning-scheduler explicit schedule as rules. The agreement with
// FTS itself, epoch by epoch, is tests/peers/side_by_side.py; these pin the translation.
#include <gtest/gtest.h>

#include "import/fts_schedule.hpp"
#include "layerfreeze/plan.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

std::string errors_of(const std::string& text, const Inventory* model = nullptr) {
  Diagnostics d;
  EXPECT_FALSE(import_fts_schedule(text, "s.yaml", model, d));
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
      "2:\n  params: ['backbone.*']\n  new_lr_scheduler: {x: 1}\n";
  Diagnostics d;
  auto im = import_fts_schedule(schedule, "s.yaml", nullptr, d);
  ASSERT_TRUE(im) << format_diagnostics(d);
  EXPECT_EQ(im->phases, 3u);
  const std::string& y = im->rules_yaml;
  EXPECT_NE(
      y.find("  - unfreeze: {regex: ['head\\.3\\.weight', '(?:head\\.3\\.b).*']}   # phase 0"),
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

TEST(FtsImport, WithAModelOnlyItsNamesAreNames) {
  // `head.0` names no parameter of this model, so FTS reads it as a regex (a prefix).
  Inventory inv = test::names_inventory({"head.0.weight", "head.0.bias"}, "net");
  Diagnostics d;
  auto im = import_fts_schedule("0:\n  params: [head.0]\n", "s.yaml", &inv, d);
  ASSERT_TRUE(im) << format_diagnostics(d);
  EXPECT_NE(im->rules_yaml.find("'(?:head.0).*'"), std::string::npos) << im->rules_yaml;
  auto bare = import_fts_schedule("0:\n  params: [head.0]\n", "s.yaml", nullptr, d);
  EXPECT_NE(bare->rules_yaml.find("'head\\.0'"), std::string::npos) << bare->rules_yaml;
}

TEST(FtsImport, WhatCannotBeImportedIsAnErrorAtItsLine) {
  EXPECT_EQ(errors_of("0:\n  params: [a]\n1:\n  params: [b]\n"),
            "2:3 fts-not-importable: phase 0 ends when FTSEarlyStopping decides (it has no "
            "max_transition_epoch): when phase 1 starts is known only at run time, so no plan can "
            "say it\n");
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
