// The main job, shown: pretrain a small character-level GPT on one real text, then fine-tune it on
// another under several layerfreeze strategies, each applied by the executor in an ordinary
// LibTorch training loop, and compare what each buys. Every number printed is measured.
//
//   finetune_demo [--pretrain-steps 400] [--epochs 4] [--steps-per-epoch 40] [--workdir
//   /tmp/lfdemo]
//
// Each strategy runs in its own process (this program with --child), so peak memory is its own,
// twice: as it is, and with the frozen prefix's output read from a layerfreeze::PrefixCache
// (docs/CACHE.md) — same batches, same order; the losses must be bit-identical, and the cached
// step time is set beside the ratio the plan predicts. An epoch is one pass over a fixed set of
// windows of the fine-tuning text (steps-per-epoch × batch of them), shuffled each epoch.
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <layerfreeze/layerfreeze.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "../char_gpt.hpp"

namespace {

struct Args {
  int64_t pretrain_steps = 400, epochs = 4, steps_per_epoch = 40, batch = 16;
  std::string workdir = "/tmp/layerfreeze-demo";
  std::string pretrain_text = "/usr/share/common-licenses/GPL-3";
  std::string finetune_text = "/usr/share/common-licenses/MPL-2.0";
  std::string child;    // a strategy name: run it and write its results
  bool cached = false;  // the child reads the frozen prefix's output from a PrefixCache
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
  // The data: fixed windows (a sample id is its index), one pass an epoch.
  const int64_t samples = a.steps_per_epoch * a.batch, ctx = model->cfg.ctx;
  torch::manual_seed(2);
  const auto windows = char_gpt::sample(fine, samples, ctx + 1);
  layerfreeze::PrefixCache cache(
      ex, {[&](const torch::Tensor& x, int32_t k) { return model->forward_prefix(x, k); },
           [&](const torch::Tensor& h, int32_t k) { return model->forward_from(h, k); }});
  // What the plan predicts for a step with the cache against one without (attention counted at
  // this sequence length), stage by stage.
  const auto stages = ex.plan()
                          .report(layerfreeze::OptimizerKind::AdamW, ex.plan().horizon(a.epochs),
                                  false, samples, ctx)
                          .stages();
  auto predicted_at = [&](int64_t epoch, int64_t global_step) {
    double r = 0;
    for (const auto& st : stages)
      if (st.at.step >= 0 ? st.at.step <= global_step : st.at.epoch <= epoch)
        r = st.step_cost > 0 && st.cached_step_cost > 0 ? st.cached_step_cost / st.step_cost : 0;
    return r;
  };
  std::ofstream steps_out(a.workdir + "/steps-" + a.child + (a.cached ? "-cached" : "") + ".txt");
  int64_t cache_bytes = 0;
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
    torch::Tensor order;
    for (int64_t s = 0; s < a.steps_per_epoch; ++s, ++step) {
      if (ex.on_step(step))
        std::printf("[%s] step %lld: %lld parameters train now\n", st.name.c_str(),
                    static_cast<long long>(step), static_cast<long long>(ex.trainable_numel()));
      if (s == 0) order = torch::randperm(samples, torch::kLong);
      auto idx = order.narrow(0, s * a.batch, a.batch);
      auto batch = windows.index_select(0, idx);
      auto in = batch.narrow(1, 0, ctx), target = batch.narrow(1, 1, ctx);
      std::vector<int64_t> ids(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + a.batch);
      const int64_t hits_before = cache.stats().hits;
      auto t0 = std::chrono::steady_clock::now();
      auto logits = a.cached ? cache.forward(in, ids) : model->forward(in);
      auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, model->cfg.vocab}),
                                                       target.reshape({-1}));
      opt.zero_grad();
      loss.backward();
      ex.step_optimizer();
      step_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      loss_sum += loss.item<double>();
      // ms, whether every row came from the cache, the plan's ratio, the loss (exact, hex)
      char hex[64];
      std::snprintf(hex, sizeof hex, "%a", loss.item<double>());
      steps_out << step_ms.back() << " " << (cache.stats().hits - hits_before == a.batch) << " "
                << predicted_at(epoch, step) << " " << hex << "\n";
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
  cache_bytes = cache.stats().memory_bytes + cache.stats().spilled_bytes;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::ofstream out(a.workdir + "/result-" + a.child + (a.cached ? "-cached" : "") + ".txt");
  out << st.name << "\n"
      << 100.0 - layerfreeze::get_frozen_percentage(*model) << " " << measured << " " << estimated
      << " " << ru.ru_maxrss / 1024.0 << " " << step_ms[step_ms.size() / 2] << " "
      << char_gpt::eval_loss(model, fine) << " " << char_gpt::eval_loss(model, pre) << " "
      << cache_bytes << "\n"
      << (cache.stats().refused.empty() ? "-" : cache.stats().refused) << "\n";
  return 0;
}

// The two runs of strategy `i` side by side: the median step time over the steps where the
// cached run read every row from the cache (and the same steps of the run without it), the
// plan's mean predicted ratio over them, and whether every loss is bit-identical.
struct CacheRow {
  double plain_ms = 0, cached_ms = 0, predicted = 0;
  size_t read_steps = 0;
  bool identical = true;
};
CacheRow compare_runs(const Args& a, size_t i) {
  struct Step {
    double ms;
    int read;
    double predicted;
    std::string loss;
  };
  auto load = [&](const std::string& suffix) {
    std::vector<Step> v;
    std::ifstream in(a.workdir + "/steps-" + std::to_string(i) + suffix + ".txt");
    Step s;
    while (in >> s.ms >> s.read >> s.predicted >> s.loss) v.push_back(s);
    return v;
  };
  const auto plain = load(""), cached = load("-cached");
  CacheRow r;
  r.identical = plain.size() == cached.size() && !plain.empty();
  std::vector<double> p, c;
  for (size_t k = 0; k < plain.size() && k < cached.size(); ++k) {
    r.identical = r.identical && plain[k].loss == cached[k].loss;
    if (!cached[k].read) continue;
    p.push_back(plain[k].ms);
    c.push_back(cached[k].ms);
    r.predicted += cached[k].predicted;
  }
  r.read_steps = c.size();
  if (!c.empty()) {
    r.predicted /= static_cast<double>(c.size());
    auto median = [](std::vector<double> v) {
      std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
      return v[v.size() / 2];
    };
    r.plain_ms = median(p);
    r.cached_ms = median(c);
  }
  return r;
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
    else if (k == "--cached")
      a.cached = v == "1";
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
  for (size_t i = 0; i < list.size(); ++i)
    for (const char* cached : {"0", "1"}) {
      std::string cmd = std::string("'") + argv[0] + "' --child " + std::to_string(i) +
                        " --workdir '" + a.workdir + "' --epochs " + std::to_string(a.epochs) +
                        " --steps-per-epoch " + std::to_string(a.steps_per_epoch) + " --cached " +
                        cached;
      std::printf("== fine-tuning on %s: %s%s\n", a.finetune_text.c_str(), list[i].name.c_str(),
                  *cached == '1' ? ", with the prefix cache" : "");
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

  // The prefix cache: the same runs with the frozen prefix's output read from a cache.
  std::printf("\n%-22s %9s %10s %15s %9s %9s %12s  %s\n", "strategy", "cached", "step ms",
              "cached step ms", "measured", "plan", "cache B", "losses");
  bool all_identical = true;
  for (size_t i = 0; i < list.size(); ++i) {
    std::ifstream in(a.workdir + "/result-" + std::to_string(i) + "-cached.txt");
    std::string name, line, refused;
    std::getline(in, name);
    std::getline(in, line);
    std::getline(in, refused);
    long long bytes = 0;
    {
      std::istringstream fields(line);
      double skip;
      for (int f = 0; f < 7; ++f) fields >> skip;
      fields >> bytes;
    }
    const CacheRow r = compare_runs(a, i);
    all_identical = all_identical && r.identical;
    if (r.read_steps == 0)
      std::printf("%-22s %9s %10s %15s %9s %9s %12s  %s  (%s)\n", name.c_str(), "0 steps", "–", "–",
                  "–", "–", "–", r.identical ? "identical" : "DIFFER",
                  refused == "-" ? "the cache was never read" : refused.c_str());
    else
      std::printf("%-22s %3zu steps %10.1f %15.1f %8.2f× %8.2f× %12lld  %s\n", name.c_str(),
                  r.read_steps, r.plain_ms, r.cached_ms, r.cached_ms / r.plain_ms, r.predicted,
                  bytes, r.identical ? "identical" : "DIFFER");
  }
  std::printf(
      "\ncached: steps where every row came from the cache (the first epoch at a boundary fills "
      "it); step ms, cached step ms: medians over those steps, without and with the cache; "
      "plan: the ratio the plan predicts (attention counted at %lld tokens); losses: every step's "
      "loss, without and with the cache, compared bit for bit.\n",
      static_cast<long long>(config().ctx));
  return all_equal && all_identical ? 0 : 1;
}
