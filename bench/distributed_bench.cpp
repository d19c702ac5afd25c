// What trainable-only gradient synchronisation saves, per preset, against synchronising every
// gradient (what DDP wrapped around the model before freezing does). A GPT-shaped model
// (12 layers × 512, vocab 8192, seq 128: the savings benchmark's) trains a few AdamW steps on
// every rank; for each preset and each mode the benchmark reports the bytes each rank all-reduces
// per step, the median time of the synchronisation (after a barrier) and of the whole step. Run it
// under the launcher (docs/PERFORMANCE.md):
//
//   build/layerfreeze launch --nproc 2 -- build/distributed_bench --steps 4 --csv
//   docs/distributed.csv
#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>
#include <layerfreeze/distributed.hpp>
#include <layerfreeze/executor.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "../examples/char_gpt.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace dist = layerfreeze::distributed;

struct Preset {
  std::string label, rules;
  std::vector<std::string> sets;
  int64_t epoch = 0;  // where in the schedule to measure
};

struct Row {
  std::string label;
  double trainable_pct = 0;
  int64_t bytes = 0;
  double sync_ms = 0, step_ms = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

Row measure(c10::intrusive_ptr<c10d::ProcessGroup> group, const Preset& p, bool all, bool overlap,
            int64_t steps) {
  torch::manual_seed(0);
  const char_gpt::Config cfg = char_gpt::bench_config();
  char_gpt::GPT model(cfg);
  layerfreeze::PlanOptions po;
  po.sets = p.sets;
  layerfreeze::Executor ex(*model, p.rules, po);
  ex.seek(p.epoch);
  dist::agree_on_plan(*group, ex);
  dist::broadcast_parameters(*group, *model);
  torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-4));
  ex.attach_optimizer(opt);
  dist::GradientSyncOptions so;
  so.all_parameters = all;
  so.overlap = overlap;
  dist::GradientSync sync(group, ex, so);
  std::vector<double> sync_ms, step_ms;
  Row row;
  row.label = p.label;
  row.trainable_pct = 100.0 * static_cast<double>(ex.trainable_numel()) /
                      static_cast<double>(ex.trainable_numel() + ex.frozen_numel());
  for (int64_t s = 0; s <= steps; ++s) {  // step 0 warms up
    torch::manual_seed(100 + s * group->getSize() + group->getRank());
    auto batch = torch::randint(0, cfg.vocab, {2, cfg.ctx + 1});
    auto t0 = Clock::now();
    opt.zero_grad();
    model->loss(batch).backward();
    // Both ranks enter synchronize() together, so `sync` times the communication (what is left
    // of it, with overlap), not the wait for the slower rank's backward (the step time still
    // includes that wait).
    group->barrier()->wait();
    auto t1 = Clock::now();
    auto stats = sync.synchronize();
    auto t2 = Clock::now();
    opt.step();
    auto t3 = Clock::now();
    if (s == 0) continue;
    sync_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    step_ms.push_back(std::chrono::duration<double, std::milli>(t3 - t0).count());
    row.bytes = stats.bytes;
  }
  row.sync_ms = median(sync_ms);
  row.step_ms = median(step_ms);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  int64_t steps = 4;
  std::string csv;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--steps")
      steps = std::stoll(v);
    else if (k == "--csv")
      csv = v;
  }
  const std::string full = "/tmp/layerfreeze-distributed-bench-full.yaml";
  std::ofstream(full) << "layerfreeze: 1\nname: full\nrules: []\n";
  const std::vector<Preset> presets = {
      {"full", full, {}},
      {"freeze_first_n(6)", "preset:freeze_first_n", {"n=6"}},
      {"lp_lora", "preset:lp_lora", {}},
      {"freeze_except_last_n(2)", "preset:freeze_except_last_n", {"n=2"}},
      {"gradual_unfreeze(e=5/10)", "preset:gradual_unfreeze", {"total_epochs=10"}, 5},
      {"bitfit", "preset:bitfit", {}},
      {"lisa(2 layers)", "preset:lisa", {}},
  };
  try {
    auto group = dist::make_process_group();
    const bool lead = group->getRank() == 0;
    std::ofstream out;
    if (lead && !csv.empty()) {
      out.open(csv);
      out << "preset,trainable_pct,bytes_trainable_only,bytes_all,sync_ms_trainable_only,sync_ms_"
             "all,"
             "step_ms_trainable_only,step_ms_all,sync_ms_overlap,step_ms_overlap,world_size\n";
    }
    if (lead)
      std::printf("%-26s %10s %14s %14s %10s %10s %10s %10s %10s %10s\n", "preset", "trainable",
                  "bytes/step", "all grads", "sync ms", "all ms", "step ms", "all ms", "ovl sync",
                  "ovl step");
    for (const auto& p : presets) {
      Row a = measure(group, p, false, false, steps);
      Row b = measure(group, p, true, false, steps);
      Row c = measure(group, p, false, true, steps);
      if (!lead) continue;
      std::printf("%-26s %9.1f%% %14lld %14lld %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f\n",
                  p.label.c_str(), a.trainable_pct, static_cast<long long>(a.bytes),
                  static_cast<long long>(b.bytes), a.sync_ms, b.sync_ms, a.step_ms, b.step_ms,
                  c.sync_ms, c.step_ms);
      std::fflush(stdout);
      if (out)
        out << p.label << "," << a.trainable_pct << "," << a.bytes << "," << b.bytes << ","
            << a.sync_ms << "," << b.sync_ms << "," << a.step_ms << "," << b.step_ms << ","
            << c.sync_ms << "," << c.step_ms << "," << group->getSize() << "\n";
    }
  } catch (const layerfreeze::DiagnosticError& e) {
    std::cerr << e.what();
    return 1;
  }
  return 0;
}
