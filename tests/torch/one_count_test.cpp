// One count (issue 24): at every change point of every shipped preset on a live GPT-2, and on a
// live fused mixture-of-experts model cut by experts, the plan's public state, the executor's
// trainable tensors and the seed API report the same trainable element count.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "esft/tiny_moe.hpp"
#include "layerfreeze/executor.hpp"
#include "layerfreeze/layerfreeze.hpp"
#include "torch_models.hpp"

namespace layerfreeze {
namespace one_count_test {

int64_t live_trainable(const Executor& ex) {
  int64_t n = 0;
  for (const auto& t : ex.trainable_parameters()) n += t.numel();
  return n;
}

TEST(OneCount, EveryPresetOnALiveGpt2CountsTheSameEverywhere) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> presets = {
      {"bitfit", {}},
      {"freeze_all", {}},
      {"freeze_by_name", {"patterns=['.*attn.*']"}},
      {"freeze_embeddings", {}},
      {"freeze_except_last_n", {"n=2"}},
      {"freeze_first_n", {"n=2"}},
      {"freeze_last_n", {"n=2"}},
      {"gradual_unfreeze", {"total_epochs=4"}},
      {"lisa", {}},
      {"badam", {}},
      {"lp_lora", {}},
      {"norm_tuning", {}},
      {"ulmfit", {}},
  };
  for (const auto& [preset, sets] : presets) {
    test::GPT2LMHeadModel m;
    PlanOptions o;
    o.sets = sets;
    o.steps_per_epoch = 100;
    o.on_warning = [](const Diagnostic&) {};
    Executor ex(*m, "preset:" + preset, o);
    for (const auto& point : ex.plan().change_points()) {
      ex.seek(point.at.epoch, point.at.step);
      const PlanState st = ex.plan().state_at(point.at);
      EXPECT_EQ(live_trainable(ex), st.trainable_numel) << preset << " at " << point.at.epoch;
      EXPECT_EQ(get_trainable_params(*m), st.trainable_numel) << preset;
      const MemorySavings ms = get_memory_savings_estimate(*m);
      EXPECT_EQ(ms.trainable_params, st.trainable_numel) << preset;
      EXPECT_EQ(ms.frozen_params, st.frozen_numel) << preset;
    }
  }
}

// A fused expert tensor trains in part: its tensor stays trainable as a whole (the executor masks
// the frozen experts' gradients), and every count says how many elements train.
TEST(OneCount, AFusedMoeCutByExpertsCountsTheTrainingSlicesOnly) {
  tiny_moe::Config cfg;
  tiny_moe::TinyMoe m(cfg);
  Executor ex(*m, test::write_rules("one_count_moe.yaml",
                                    "rules:\n  - freeze: all\n  - unfreeze: {experts: [1, 2]}\n"));
  const PlanState st = ex.plan().state_at({0, 0});
  ASSERT_FALSE(st.masked.empty());
  for (const auto& [i, frozen] : st.masked) EXPECT_EQ(frozen.size(), 6u);  // 8 experts - 2
  const MemorySavings ms = get_memory_savings_estimate(*m);
  EXPECT_EQ(ms.trainable_params, st.trainable_numel);
  EXPECT_EQ(ms.frozen_params, st.frozen_numel);
  EXPECT_GT(ms.masked_frozen_params, 0);
  // The live tensors that require gradients are the masked ones, whole.
  int64_t masked_whole = 0;
  for (const auto& [i, frozen] : st.masked) masked_whole += ex.inventory().params()[i].numel;
  EXPECT_EQ(live_trainable(ex), masked_whole);
  EXPECT_EQ(live_trainable(ex) - ms.masked_frozen_params, st.trainable_numel);
}

}  // namespace one_count_test
}  // namespace layerfreeze
