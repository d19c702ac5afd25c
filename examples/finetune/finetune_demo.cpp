// The main job, shown: pretrain a small character-level GPT on one real text, then fine-tune it on
// another under several layerfreeze strategies, each applied by the executor in an ordinary
// LibTorch training loop, and compare what each buys. Every number printed is measured.
//
//   finetune_demo [--pretrain-steps 400] [--epochs 4] [--steps-per-epoch 40] [--workdir
//   /tmp/lfdemo]
//
// Each strategy runs in its own process (this program with --child), so peak memory is its own.
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <layerfreeze/layerfreeze.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "../char_gpt.hpp"

namespace {

struct Args {
  int64_t pretrain_steps = 400, epochs = 4, steps_per_epoch = 40, batch = 16;
  std::string workdir = "/tmp/layerfreeze-demo";
  std::string pretrain_text = "/usr/share/common-licenses/GPL-3";
  std::string finetune_text = "/usr/share/common-licenses/MPL-2.0";
  std::string child;  // a strategy name: run it and write its results
};

struct Strategy {
  std::string name, rules;
  std::vector<std::string> sets;
};

std::vector<Strategy> strategies(const Args& a, const std::string& full_rules) {
  return {
      {"full fine-tuning", full_rules, {}},
      {"freeze_first_n", "preset:freeze_first_n", {"n=2"}},
      {"lp_lora", "preset:lp_lora", {}},
      {"gradual_unfreeze", "preset:gradual_unfreeze", {"total_epochs=" + std::to_string(a.epochs)}},
      {"freeze_except_last_n", "preset:freeze_except_last_n", {"n=1"}},
      {"lisa",
       "preset:lisa",
       {"active_layers=1",
        "interval_steps=" + std::to_string(std::max<int64_t>(1, a.steps_per_epoch / 2))}},
  };
}

char_gpt::Config config() { return char_gpt::Config{}; }

// Bytes of gradients and AdamW state a training step holds now.
int64_t grad_and_state_bytes(char_gpt::GPT& model, torch::optim::AdamW& opt) {
  const auto kept = layerfreeze::kept_bytes(model->parameters(), opt);
  return kept.gradients + kept.optimizer_state;
}

int run_child(const Args& a, const Strategy& st) {
  torch::manual_seed(1);
  char_gpt::GPT model(config());
  torch::load(model, a.workdir + "/pretrained.pt");
  auto pre = char_gpt::read_text(a.pretrain_text), fine = char_gpt::read_text(a.finetune_text);
  layerfreeze::PlanOptions po;
  po.sets = st.sets;
  po.steps_per_epoch = a.steps_per_epoch;
  layerfreeze::Executor ex(*model, st.rules, po);
  {
    // The plan as a report a reviewer opens in a browser (docs/CLI.md, "plan --format html").
    const std::string report = a.workdir + "/report-" + a.child + ".html";
    std::ofstream(report) << ex.plan().html(layerfreeze::OptimizerKind::AdamW,
                                            ex.plan().horizon(a.epochs));
    std::printf("[%s] the plan as a report: %s\n", st.name.c_str(), report.c_str());
  }
  torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-3));
  ex.attach_optimizer(opt);
  std::vector<double> step_ms;
  double loss_sum = 0;
  int64_t step = 0, measured = 0, estimated = 0;
  int64_t total_bytes = 0;
  {
    std::vector<const void*> seen;
    for (const auto& p : model->parameters()) {
      if (std::find(seen.begin(), seen.end(), p.unsafeGetTensorImpl()) != seen.end()) continue;
      seen.push_back(p.unsafeGetTensorImpl());
      total_bytes += p.nbytes();
    }
  }
  for (int64_t epoch = 0; epoch < a.epochs; ++epoch) {
    if (ex.on_epoch_begin(epoch) || epoch == 0) {
      std::printf("[%s] epoch %lld: the plan changes the frozen set\n%s", st.name.c_str(),
                  static_cast<long long>(epoch), layerfreeze::layer_status(*model).c_str());
    }
    loss_sum = 0;
    for (int64_t s = 0; s < a.steps_per_epoch; ++s, ++step) {
      if (ex.on_step(step))
        std::printf("[%s] step %lld: %lld parameters train now\n", st.name.c_str(),
                    static_cast<long long>(step), static_cast<long long>(ex.trainable_numel()));
      auto t0 = std::chrono::steady_clock::now();
      auto loss = model->loss(char_gpt::sample(fine, a.batch, model->cfg.ctx + 1));
      opt.zero_grad();
      loss.backward();
      opt.step();
      step_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      loss_sum += loss.item<double>();
    }
    measured = grad_and_state_bytes(model, opt);
    auto saved =
        layerfreeze::get_memory_savings_estimate(*model, layerfreeze::OptimizerKind::AdamW);
    estimated = 3 * total_bytes - saved.gradient_saved_bytes - saved.optimizer_saved_bytes;
    std::printf("[%s] epoch %lld: train loss %.3f, trainable %.1f%%, median step %.1f ms\n",
                st.name.c_str(), static_cast<long long>(epoch),
                loss_sum / static_cast<double>(a.steps_per_epoch),
                100.0 - layerfreeze::get_frozen_percentage(*model), [&] {
                  auto v = step_ms;
                  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
                  return v[v.size() / 2];
                }());
  }
  std::sort(step_ms.begin(), step_ms.end());
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::ofstream out(a.workdir + "/result-" + a.child + ".txt");
  out << st.name << "\n"
      << 100.0 - layerfreeze::get_frozen_percentage(*model) << " " << measured << " " << estimated
      << " " << ru.ru_maxrss / 1024.0 << " " << step_ms[step_ms.size() / 2] << " "
      << char_gpt::eval_loss(model, fine) << " " << char_gpt::eval_loss(model, pre) << "\n";
  return 0;
}

int pretrain(const Args& a) {
  torch::manual_seed(0);
  char_gpt::GPT model(config());
  auto text = char_gpt::read_text(a.pretrain_text);
  torch::optim::AdamW opt(layerfreeze::trainable_parameters(*model),
                          torch::optim::AdamWOptions(3e-3));
  std::printf("pretraining a %lld-layer character GPT (%lld parameters) on %s (%lld characters)\n",
              static_cast<long long>(model->cfg.layers),
              static_cast<long long>(layerfreeze::get_trainable_params(*model)),
              a.pretrain_text.c_str(), static_cast<long long>(text.size(0)));
  for (int64_t s = 1; s <= a.pretrain_steps; ++s) {
    auto loss = model->loss(char_gpt::sample(text, a.batch, model->cfg.ctx + 1));
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (s % 100 == 0 || s == a.pretrain_steps)
      std::printf("  step %lld: loss %.3f\n", static_cast<long long>(s), loss.item<double>());
  }
  torch::save(model, a.workdir + "/pretrained.pt");
  auto fine = char_gpt::read_text(a.finetune_text);
  std::printf(
      "saved %s/pretrained.pt — before fine-tuning: loss %.3f on the pretraining text, %.3f on the "
      "fine-tuning "
      "text\n\n",
      a.workdir.c_str(), char_gpt::eval_loss(model, text), char_gpt::eval_loss(model, fine));
  std::ofstream(a.workdir + "/baseline.txt")
      << char_gpt::eval_loss(model, text) << " " << char_gpt::eval_loss(model, fine) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);  // two torch threads fight OpenBLAS's on 2 cores
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--pretrain-steps")
      a.pretrain_steps = std::stoll(v);
    else if (k == "--epochs")
      a.epochs = std::stoll(v);
    else if (k == "--steps-per-epoch")
      a.steps_per_epoch = std::stoll(v);
    else if (k == "--workdir")
      a.workdir = v;
    else if (k == "--child")
      a.child = v;
    else {
      std::fprintf(
          stderr,
          "usage: %s [--pretrain-steps N] [--epochs E] [--steps-per-epoch S] [--workdir DIR]\n",
          argv[0]);
      return 2;
    }
  }
  std::string full_rules = a.workdir + "/full.yaml";
  auto list = strategies(a, full_rules);
  if (!a.child.empty()) return run_child(a, list.at(std::stoul(a.child)));

  std::string mk = "mkdir -p '" + a.workdir + "'";
  if (std::system(mk.c_str()) != 0) return 1;
  std::ofstream(full_rules) << "# full fine-tuning: nothing frozen\nrules: []\n";
  if (pretrain(a) != 0) return 1;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string cmd = std::string("'") + argv[0] + "' --child " + std::to_string(i) +
                      " --workdir '" + a.workdir + "' --epochs " + std::to_string(a.epochs) +
                      " --steps-per-epoch " + std::to_string(a.steps_per_epoch);
    std::printf("== fine-tuning on %s: %s\n", a.finetune_text.c_str(), list[i].name.c_str());
    std::fflush(stdout);
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "strategy %s failed\n", list[i].name.c_str());
      return 1;
    }
    std::printf("\n");
  }
  double base_pre = 0, base_fine = 0;
  std::ifstream(a.workdir + "/baseline.txt") >> base_pre >> base_fine;
  std::printf("%-22s %10s %14s %14s %9s %10s %11s %12s\n", "(pretrained, before)", "", "", "", "",
              "", "", "");
  std::printf("%-22s %10s %14s %14s %9s %10s %11.3f %12.3f\n", "  baseline", "", "", "", "", "",
              base_fine, base_pre);
  std::printf("%-22s %10s %14s %14s %9s %10s %11s %12s\n", "strategy", "trainable", "grad+Adam B",
              "estimate B", "peak MB", "step ms", "fine loss", "forgetting");
  bool all_equal = true;
  for (size_t i = 0; i < list.size(); ++i) {
    std::ifstream in(a.workdir + "/result-" + std::to_string(i) + ".txt");
    std::string name;
    std::getline(in, name);
    double trainable, rss, ms, fine, pre;
    long long measured, estimated;
    in >> trainable >> measured >> estimated >> rss >> ms >> fine >> pre;
    all_equal = all_equal && measured == estimated;
    std::printf("%-22s %9.1f%% %14lld %14lld %9.1f %10.1f %11.3f %12.3f\n", name.c_str(), trainable,
                measured, estimated, rss, ms, fine, pre);
  }
  std::printf(
      "\ngrad+Adam B: gradient and AdamW-state bytes after the last step, measured; estimate B: "
      "the same from "
      "get_memory_savings_estimate (%s).\nfine loss: on the fine-tuning text; forgetting: loss on "
      "the pretraining "
      "text afterwards (lower = less forgotten).\n",
      all_equal ? "equal for every strategy" : "DIFFERENT for some strategy");
  return all_equal ? 0 : 1;
}
