// The cache benchmark (docs/CACHE.md, docs/PERFORMANCE.md): step and epoch time with and without
// layerfreeze::PrefixCache, side by side in one run, against the ratio the plan predicts.
//
// For each model and strategy, two copies of one model train on the same batches in the same
// order: A runs the model's forward, B reads the frozen prefix's output from a PrefixCache. An
// epoch fills the cache (B's "fill epoch"), then each measured step times A and B alternately (the
// order flips every batch, so drift falls on both alike). Losses must be bit-identical at every
// step; the cache's bytes are compared with the plan's estimate (`plan --cache-samples N
// --seq-len S`); the predicted ratio is the plan's cached step cost over its step cost, counting
// attention and a tied output layer at the sequence length (`plan --seq-len`).
//
//   build/cache_bench [--epochs 3] [--threads 1] [--models demo,deep] [--csv FILE]
#include <ATen/Parallel.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>
#include <layerfreeze/layerfreeze.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "../examples/char_gpt.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Model {
  std::string label;
  char_gpt::Config cfg;
  int64_t batch;
};

struct Strategy {
  std::string label, rules;
  std::vector<std::string> sets;
  int64_t seek_epoch = 0;  // where in the schedule the steps are measured
};

std::vector<Model> models() {
  Model demo{"demo GPT (4 × 128, untied head)", char_gpt::Config{}, 16};
  demo.cfg.tie_head = false;
  Model deep{"deep GPT (12 × 192, ctx 64, vocab 256)", char_gpt::Config{}, 8};
  deep.cfg.layers = 12;
  deep.cfg.d = 192;
  deep.cfg.vocab = 256;
  deep.cfg.heads = 4;
  deep.cfg.tie_head = false;
  return {demo, deep};
}

std::vector<Strategy> strategies(const Model& m, const std::string& rules_dir) {
  const std::string first_n = rules_dir + "/layerfreeze-cache-bench-first-n.yaml";
  std::ofstream(first_n) << "layerfreeze: 1\nextends: preset:freeze_first_n\nrules:\n"
                            "  - freeze: embeddings\n";
  const int64_t L = m.cfg.layers;
  return {
      {"lp_lora", "preset:lp_lora", {}, 0},
      {"freeze_first_n(" + std::to_string(L / 4) + ") + embeddings",
       first_n,
       {"n=" + std::to_string(L / 4)},
       0},
      {"freeze_except_last_n(1)", "preset:freeze_except_last_n", {"n=1"}, 0},
      // total_epochs = 2L + 1: a layer opens every other epoch; epoch L holds half of them open.
      {"gradual_unfreeze (epoch " + std::to_string(L) + ")",
       "preset:gradual_unfreeze",
       {"total_epochs=" + std::to_string(2 * L + 1)},
       L},
  };
}

struct Row {
  std::string model, strategy;
  int32_t boundary = -1;
  double uncached_ms = 0, cached_ms = 0, fill_epoch_ms = 0, uncached_epoch_ms = 0,
         cached_epoch_ms = 0, predicted = 0;
  int64_t cache_bytes = 0, plan_bytes = 0;
  bool identical = true;
};

Row measure(const Model& m, const Strategy& s, int64_t epochs) {
  Row row{m.label, s.label};
  const int64_t batches = 4, n = batches * m.batch, ctx = m.cfg.ctx;
  layerfreeze::PlanOptions po;
  po.sets = s.sets;
  auto make = [&](char_gpt::GPT& model) {
    auto ex = std::make_unique<layerfreeze::Executor>(*model, s.rules, po);
    if (s.seek_epoch) ex->seek(s.seek_epoch);
    return ex;
  };
  torch::manual_seed(0);
  char_gpt::GPT a(m.cfg);
  torch::manual_seed(0);
  char_gpt::GPT b(m.cfg);
  auto ea = make(a), eb = make(b);
  torch::optim::AdamW oa(ea->trainable_parameters(), torch::optim::AdamWOptions(1e-4));
  torch::optim::AdamW ob(eb->trainable_parameters(), torch::optim::AdamWOptions(1e-4));
  ea->attach_optimizer(oa);
  eb->attach_optimizer(ob);
  layerfreeze::PrefixCache cache(
      *eb, {[&](const torch::Tensor& x, int32_t k) { return b->forward_prefix(x, k); },
            [&](const torch::Tensor& h, int32_t k) { return b->forward_from(h, k); }});
  // The plan's prediction where the steps run, with attention at this sequence length.
  const auto report =
      eb->plan().report(layerfreeze::OptimizerKind::AdamW, std::nullopt, false, n, ctx);
  for (const auto& st : report.stages())
    if (st.at.epoch <= s.seek_epoch) {
      row.boundary = st.cache_layers;
      row.predicted =
          st.step_cost > 0 && st.cached_step_cost > 0 ? st.cached_step_cost / st.step_cost : 0;
      row.plan_bytes = st.cache_bytes;
    }
  torch::manual_seed(1);
  const auto data = torch::randint(0, m.cfg.vocab, {n, ctx + 1}, torch::kLong);
  auto step = [&](bool cached, const torch::Tensor& idx) {
    auto batch = data.index_select(0, idx);
    auto in = batch.narrow(1, 0, ctx), target = batch.narrow(1, 1, ctx);
    std::vector<int64_t> ids(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.size(0));
    auto t0 = Clock::now();
    auto logits = cached ? cache.forward(in, ids) : a->forward(in);
    auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, m.cfg.vocab}),
                                                     target.reshape({-1}));
    auto& opt = cached ? ob : oa;
    opt.zero_grad();
    loss.backward();
    (cached ? eb : ea)->step_optimizer();
    return std::make_pair(ms_since(t0), loss.item<double>());
  };
  std::vector<double> ua, cb;
  for (int64_t e = 0; e <= epochs; ++e) {  // epoch 0 fills the cache
    const auto order = torch::randperm(n, torch::kLong);
    double ea_ms = 0, eb_ms = 0;
    for (int64_t k = 0; k < batches; ++k) {
      auto idx = order.narrow(0, k * m.batch, m.batch);
      std::pair<double, double> ra, rb;
      if (k % 2) {
        rb = step(true, idx);
        ra = step(false, idx);
      } else {
        ra = step(false, idx);
        rb = step(true, idx);
      }
      row.identical = row.identical && ra.second == rb.second;
      ea_ms += ra.first;
      eb_ms += rb.first;
      if (e > 0) ua.push_back(ra.first), cb.push_back(rb.first);
    }
    if (e == 0)
      row.fill_epoch_ms = eb_ms;
    else
      row.uncached_epoch_ms += ea_ms / epochs, row.cached_epoch_ms += eb_ms / epochs;
  }
  row.uncached_ms = median(ua);
  row.cached_ms = median(cb);
  const auto st = cache.stats();
  row.cache_bytes = st.memory_bytes + st.spilled_bytes;
  if (!st.refused.empty())
    std::fprintf(stderr, "  [%s] not cached: %s\n", s.label.c_str(), st.refused.c_str());
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t epochs = 3, threads = 1;
  std::string csv, which = "demo,deep";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--epochs")
      epochs = std::max<int64_t>(1, std::stoll(v));
    else if (k == "--threads")
      threads = std::stoll(v);
    else if (k == "--csv")
      csv = v;
    else if (k == "--models")
      which = v;
  }
  at::set_num_threads(static_cast<int>(threads));
  std::vector<Row> rows;
  for (const auto& m : models()) {
    if (which.find(m.label.substr(0, 4)) == std::string::npos) continue;
    for (const auto& s : strategies(m, "/tmp")) {
      std::fprintf(stderr, "%s · %s ...\n", m.label.c_str(), s.label.c_str());
      rows.push_back(measure(m, s, epochs));
    }
  }
  std::printf(
      "| model | strategy | boundary | step ms | cached step ms | measured | plan | off by | "
      "epoch ms | fill epoch ms | cached epoch ms | cache bytes | plan's bytes | losses |\n"
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  bool ok = true;
  for (const auto& r : rows) {
    const double measured = r.uncached_ms > 0 ? r.cached_ms / r.uncached_ms : 0;
    const bool cached = r.boundary >= 0 && r.predicted > 0;
    ok = ok && r.identical && (!cached || r.cache_bytes == r.plan_bytes);
    std::printf(
        "| %s | %s | %s | %.1f | %.1f | %.2f× | %s | %s | %.0f | %.0f | %.0f | %lld | %lld | "
        "%s |\n",
        r.model.c_str(), r.strategy.c_str(),
        r.boundary >= 0 ? std::to_string(r.boundary).c_str() : "none", r.uncached_ms, r.cached_ms,
        measured, cached ? (std::to_string(r.predicted).substr(0, 4) + "×").c_str() : "–",
        cached ? (std::to_string(
                      static_cast<int>(std::lround(100 * (measured - r.predicted) / r.predicted))) +
                  "%")
                     .c_str()
               : "–",
        r.uncached_epoch_ms, r.fill_epoch_ms, r.cached_epoch_ms,
        static_cast<long long>(r.cache_bytes), static_cast<long long>(r.plan_bytes),
        r.identical ? "identical" : "DIFFER");
  }
  if (!csv.empty()) {
    std::ofstream out(csv);
    out << "model,strategy,boundary,step_ms,cached_step_ms,predicted_ratio,epoch_ms,fill_epoch_ms,"
           "cached_epoch_ms,cache_bytes,plan_bytes,identical\n";
    for (const auto& r : rows)
      out << '"' << r.model << "\",\"" << r.strategy << "\"," << r.boundary << "," << r.uncached_ms
          << "," << r.cached_ms << "," << r.predicted << "," << r.uncached_epoch_ms << ","
          << r.fill_epoch_ms << "," << r.cached_epoch_ms << "," << r.cache_bytes << ","
          << r.plan_bytes << "," << (r.identical ? 1 : 0) << "\n";
  }
  return ok ? 0 : 1;
}
