// The replay engine without LibTorch: every preset, on language, encoder-decoder, vision and
// vision-language models, replayed through a recording sink — forward one step at a time,
// forward in one jump, backward — must hold the plan's state at every time, report exactly the
// timeline's change points, and survive a sink that throws.
#include <gtest/gtest.h>

#include <stdexcept>

#include "api/plan_access.hpp"
#include "core/replay.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

constexpr int64_t kStepsPerEpoch = 5;

struct ReplayCase {
  std::string preset;
  std::vector<std::string> sets;
};

std::vector<ReplayCase> replay_cases() {
  std::vector<ReplayCase> out;
  for (const auto& name : preset_names()) {
    if (name == "esft") continue;  // mixture-of-experts models only: experts_test.cpp replays it
    ReplayCase c{name, {}};
    if (name == "freeze_first_n" || name == "freeze_last_n" || name == "freeze_except_last_n")
      c.sets = {"n=2"};
    if (name == "gradual_unfreeze") c.sets = {"total_epochs=5", "unfreeze_embeddings_at=3"};
    if (name == "freeze_by_name") c.sets = {"patterns=['.*attn.*', '.*norm.*']"};
    if (name == "lisa") c.sets = {"interval_steps=3"};
    out.push_back(c);
  }
  return out;
}

const std::vector<std::string>& models() {
  static const std::vector<std::string> m = {
      "builtin:gpt2", "builtin:t5-small", "builtin:resnet50",
      std::string(LAYERFREEZE_TEST_DATA) + "/real-checkpoints/olmocr-qwen2-vl-7b"};
  return m;
}

std::optional<CompiledPlan> compile_case(const ReplayCase& c, const std::string& model,
                                         Diagnostics& d) {
  auto s = Strategy::load("preset:" + c.preset, d);
  auto inv = load_model(model, d);
  if (!s || !inv) return std::nullopt;
  PlanOptions o;
  o.sets = c.sets;
  o.steps_per_epoch = kStepsPerEpoch;
  auto p = compile(*s, *inv, o, d);
  if (!p) return std::nullopt;
  return PlanAccess::compiled(*p);
}

std::vector<uint32_t> sorted(std::vector<uint32_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

class ReplayPresets : public ::testing::TestWithParam<std::tuple<ReplayCase, std::string>> {};

TEST_P(ReplayPresets, EveryTimeHoldsThePlansStateAndEveryChangeIsOnTheTimeline) {
  const auto& [c, model] = GetParam();
  Diagnostics d;
  auto plan = compile_case(c, model, d);
  ASSERT_TRUE(plan) << format_diagnostics(d);
  const Time h = plan->horizon();
  const size_t n = plan->inventory->params().size();

  // Forward, one step at a time (epochs follow from steps_per_epoch).
  Replay r(*plan);
  RecordingSink sink(n);
  r.start(sink);
  ASSERT_EQ(sink.changes().size(), 1u);
  EXPECT_EQ(sink.state(), plan->frozen_at({0, 0}));
  for (int64_t s = 0; s < h.step + 2 * kStepsPerEpoch; ++s) {
    Time t{s / kStepsPerEpoch, s};
    r.move_to(t, sink);
    ASSERT_EQ(sink.state(), plan->frozen_at(t)) << "at step " << s;
    ASSERT_EQ(r.frozen(), plan->frozen_at(t));
  }
  // The changes it reported are the timeline's, in order.
  const Time end{(h.step + 2 * kStepsPerEpoch - 1) / kStepsPerEpoch + 1,
                 h.step + 2 * kStepsPerEpoch};
  auto timeline = plan->timeline(end);
  ASSERT_EQ(sink.changes().size(), timeline.size());
  for (size_t k = 1; k < timeline.size(); ++k) {
    EXPECT_EQ(sorted(sink.changes()[k].frozen), sorted(timeline[k].newly_frozen)) << "change " << k;
    EXPECT_EQ(sorted(sink.changes()[k].unfrozen), sorted(timeline[k].newly_unfrozen))
        << "change " << k;
  }

  // Forward in one jump: the same change points, applied in order.
  Replay jump(*plan);
  RecordingSink jumped(n);
  jump.start(jumped);
  Time last{(h.step + 2 * kStepsPerEpoch - 1) / kStepsPerEpoch, h.step + 2 * kStepsPerEpoch - 1};
  jump.move_to(last, jumped);
  EXPECT_EQ(jumped.state(), plan->frozen_at(last));
  EXPECT_EQ(jumped.changes().size(), sink.changes().size());

  // Backward: one jump to any earlier time lands in its state.
  for (int64_t s = last.step; s >= 0; s -= 3) {
    Time t{s / kStepsPerEpoch, s};
    jump.move_to(t, jumped);
    ASSERT_EQ(jumped.state(), plan->frozen_at(t)) << "back to step " << s;
    EXPECT_EQ(jump.now().step, s);
  }
}

INSTANTIATE_TEST_SUITE_P(AllPresets, ReplayPresets,
                         ::testing::Combine(::testing::ValuesIn(replay_cases()),
                                            ::testing::ValuesIn(models())),
                         [](const auto& info) {
                           std::string m = std::get<1>(info.param);
                           m = m.substr(m.find_last_of(":/") + 1);
                           std::string n = std::get<0>(info.param).preset + "_" + m;
                           for (auto& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// A sink that refuses its k-th call, as LibTorch may refuse a requires_grad change.
class FailingSink : public RecordingSink {
 public:
  FailingSink(size_t n, int fail_at) : RecordingSink(n), fail_at_(fail_at) {}
  void freeze(uint32_t i) override {
    maybe_fail();
    RecordingSink::freeze(i);
  }
  void unfreeze(uint32_t i) override {
    maybe_fail();
    RecordingSink::unfreeze(i);
  }
  int fail_at_;

 private:
  void maybe_fail() {
    if (--fail_at_ == 0) throw std::runtime_error("refused");
  }
};

TEST(Replay, ASinkThatThrowsLeavesTheLastCompleteChangePoint) {
  Diagnostics d;
  auto plan = compile_case({"gradual_unfreeze", {"total_epochs=5"}}, "builtin:gpt2", d);
  ASSERT_TRUE(plan) << format_diagnostics(d);
  const size_t n = plan->inventory->params().size();
  Replay r(*plan);
  FailingSink sink(n, 1000000);
  r.start(sink);
  r.move_to({1, 1 * kStepsPerEpoch}, sink);
  const Bitset at1 = plan->frozen_at({1, kStepsPerEpoch});
  ASSERT_EQ(sink.state(), at1);
  // Moving to epoch 4 passes the change points of epochs 2 and 3; the sink refuses a call in
  // the second one.
  auto timeline = plan->timeline({5, 5 * kStepsPerEpoch});
  size_t calls_epoch2 = 0;
  for (const auto& p : timeline)
    if (p.at.epoch == 2) calls_epoch2 = p.newly_frozen.size() + p.newly_unfrozen.size();
  ASSERT_GT(calls_epoch2, 0u);
  sink.fail_at_ = static_cast<int>(calls_epoch2) + 2;
  EXPECT_THROW(r.move_to({4, 4 * kStepsPerEpoch}, sink), std::runtime_error);
  EXPECT_EQ(r.now().epoch, 2);
  EXPECT_EQ(sink.state(), plan->frozen_at({2, 2 * kStepsPerEpoch}));
  EXPECT_EQ(r.frozen(), sink.state());
  // And the replay goes on from there.
  sink.fail_at_ = 1000000;
  r.move_to({4, 4 * kStepsPerEpoch}, sink);
  EXPECT_EQ(sink.state(), plan->frozen_at({4, 4 * kStepsPerEpoch}));
}

TEST(Replay, NoChangeIsNoCall) {
  Diagnostics d;
  auto plan = compile_case({"lp_lora", {}}, "builtin:gpt2", d);
  ASSERT_TRUE(plan) << format_diagnostics(d);
  Replay r(*plan);
  RecordingSink sink(plan->inventory->params().size());
  r.start(sink);
  for (int64_t s = 0; s < 100; ++s) EXPECT_FALSE(r.move_to({s / 10, s}, sink));
  EXPECT_EQ(sink.changes().size(), 1u);
}

TEST(Replay, OneHorizonForTheCliTheExecutorAndTheApi) {
  Diagnostics d;
  auto plan = compile_case({"lisa", {"interval_steps=3"}}, "builtin:gpt2", d);
  ASSERT_TRUE(plan) << format_diagnostics(d);
  // Ten periods of 3 steps, then one more step; epochs follow steps_per_epoch.
  Time h = plan->horizon();
  EXPECT_EQ(h.step, 31);
  EXPECT_EQ(h.epoch, 1);
  Time e = plan->horizon(4);
  EXPECT_EQ(e.epoch, 4);
  EXPECT_EQ(e.step, 4 * kStepsPerEpoch);
  Time s = plan->horizon(std::nullopt, 12);
  EXPECT_EQ(s.step, 12);
  EXPECT_EQ(s.epoch, 3);  // ceil(12 / 5)
}

}  // namespace
}  // namespace layerfreeze
