// The savings benchmark: a GPT-shaped model (12 layers, d_model 512, vocab 8192, seq 128,
// batch 4) trained for a few AdamW steps under each preset, one process per preset. It reports
// trainable parameters, the gradient + optimizer-state bytes measured after a real step against
// get_memory_savings_estimate (they must be equal), peak RSS, forward / backward / optimizer time,
// and the backward time saved against the ideal for the frozen prefix.
//
//   build/savings_bench [--steps 3] [--csv docs/savings.csv]     (scripts/plot_savings.py draws it)
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <torch/optim/adamw.h>
#include <layerfreeze/layerfreeze.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "../examples/char_gpt.hpp"

namespace {

struct Preset {
  std::string label, rules;
  std::vector<std::string> sets;
};

const std::vector<Preset> kPresets = {
    {"full", "", {}},
    {"freeze_first_n(6)", "preset:freeze_first_n", {"n=6"}},
    {"lp_lora", "preset:lp_lora", {}},
    {"freeze_except_last_n(2)", "preset:freeze_except_last_n", {"n=2"}},
    {"gradual_unfreeze(e=5/10)", "preset:gradual_unfreeze", {"total_epochs=10"}},
    {"bitfit", "preset:bitfit", {}},
    {"lisa(2 layers)", "preset:lisa", {}},
};

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int child(size_t index, int64_t steps, const std::string& out_path) {
  at::set_num_threads(1);
  torch::manual_seed(0);
  const char_gpt::Config cfg = char_gpt::bench_config();
  char_gpt::GPT model(cfg);
  const Preset& p = kPresets[index];
  std::unique_ptr<layerfreeze::Executor> ex;
  if (!p.rules.empty()) {
    layerfreeze::PlanOptions po;
    po.sets = p.sets;
    ex = std::make_unique<layerfreeze::Executor>(*model, p.rules, po);
    if (p.rules == "preset:gradual_unfreeze") ex->seek(5);  // mid-schedule: half the layers open
  }
  auto params = layerfreeze::trainable_parameters(*model);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-4));
  if (ex) ex->attach_optimizer(opt);
  std::vector<double> fwd, bwd, upd;
  for (int64_t s = 0; s <= steps;
       ++s) {  // step 0 warms up (allocations, first-touch autograd metadata)
    auto batch = torch::randint(0, cfg.vocab, {4, cfg.ctx + 1});
    auto t0 = Clock::now();
    auto loss = model->loss(batch);
    double f = ms_since(t0);
    opt.zero_grad();
    t0 = Clock::now();
    loss.backward();
    double b = ms_since(t0);
    t0 = Clock::now();
    opt.step();
    double u = ms_since(t0);
    if (s > 0) fwd.push_back(f), bwd.push_back(b), upd.push_back(u);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  int64_t measured = 0, total_bytes = 0, first_trainable = cfg.layers;
  for (const auto& t : layerfreeze::trainable_parameters(*model))
    if (t.grad().defined()) measured += t.grad().nbytes();
  for (const auto& [k, st] : opt.state()) {
    auto& s = static_cast<torch::optim::AdamWParamState&>(*st);
    measured += s.exp_avg().nbytes() + s.exp_avg_sq().nbytes();
  }
  std::vector<const void*> seen;
  for (const auto& t : model->parameters())
    if (std::find(seen.begin(), seen.end(), t.unsafeGetTensorImpl()) == seen.end()) {
      seen.push_back(t.unsafeGetTensorImpl());
      total_bytes += t.nbytes();
    }
  // The frozen prefix: layers below the first trainable one, when the embeddings are frozen too.
  bool embeddings_train = model->transformer->wpe->weight.requires_grad();
  for (int64_t l = cfg.layers - 1; l >= 0; --l)
    for (const auto& t : model->transformer->h[l]->parameters())
      if (t.requires_grad()) first_trainable = std::min(first_trainable, l);
  int64_t prefix = embeddings_train ? 0 : first_trainable;
  auto saved = layerfreeze::get_memory_savings_estimate(*model, layerfreeze::OptimizerKind::AdamW);
  int64_t estimate = 3 * total_bytes - saved.gradient_saved_bytes - saved.optimizer_saved_bytes;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::ofstream out(out_path);
  out << p.label << "," << layerfreeze::get_trainable_params(*model) << "," << measured << ","
      << estimate << "," << ru.ru_maxrss / 1024.0 << "," << median(fwd) << "," << median(bwd) << ","
      << median(upd) << "," << prefix << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 3;
  std::string csv;
  long child_index = -1;
  std::string child_out;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--steps")
      steps = std::stoll(v);
    else if (k == "--csv")
      csv = v;
    else if (k == "--child")
      child_index = std::stol(v);
    else if (k == "--out")
      child_out = v;
  }
  if (child_index >= 0) return child(static_cast<size_t>(child_index), steps, child_out);

  // A first, discarded run: the first process on a cold machine is measurably slower.
  std::string warm = std::string("'") + argv[0] +
                     "' --child 0 --steps 1 --out /tmp/layerfreeze-savings-warmup.csv";
  if (std::system(warm.c_str()) != 0) return 1;
  std::vector<std::string> rows;
  for (size_t i = 0; i < kPresets.size(); ++i) {
    std::string out = "/tmp/layerfreeze-savings-" + std::to_string(i) + ".csv";
    std::string cmd = std::string("'") + argv[0] + "' --child " + std::to_string(i) + " --steps " +
                      std::to_string(steps) + " --out " + out;
    std::fprintf(stderr, "running %s ...\n", kPresets[i].label.c_str());
    if (std::system(cmd.c_str()) != 0) return 1;
    std::ifstream in(out);
    std::string line;
    std::getline(in, line);
    rows.push_back(line);
  }
  // label, trainable, measured, estimate, rss, fwd, bwd, opt, prefix
  double full_bwd = 0;
  std::printf(
      "| preset | trainable | grad + AdamW bytes | estimate | equal | peak RSS MB | forward ms | "
      "backward ms | "
      "optimizer ms | backward saved | ideal (frozen prefix) "
      "|\n|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
  bool all_equal = true;
  for (const auto& r : rows) {
    char label[64];
    long long trainable, measured, estimate, prefix;
    double rss, f, b, u;
    std::sscanf(r.c_str(), "%63[^,],%lld,%lld,%lld,%lf,%lf,%lf,%lf,%lld", label, &trainable,
                &measured, &estimate, &rss, &f, &b, &u, &prefix);
    if (full_bwd == 0) full_bwd = b;
    // Ideal: backward through the frozen prefix skipped entirely; the 12 layers and the tied
    // output projection (as large as ~1.3 layers here) share the rest.
    double ideal = full_bwd * static_cast<double>(prefix) / (12.0 + 1.3);
    all_equal = all_equal && measured == estimate;
    std::printf(
        "| %s | %lld | %lld | %lld | %s | %.0f | %.0f | %.0f | %.0f | %.0f ms | %.0f ms |\n", label,
        trainable, measured, estimate, measured == estimate ? "yes" : "NO", rss, f, b, u,
        full_bwd - b, ideal);
  }
  if (!csv.empty()) {
    std::ofstream out(csv);
    out << "preset,trainable,grad_state_bytes,estimate_bytes,peak_rss_mb,forward_ms,backward_ms,"
           "optimizer_ms,frozen_prefix\n";
    for (const auto& r : rows) out << r << "\n";
  }
  return all_equal ? 0 : 1;
}
