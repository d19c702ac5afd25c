// Expert-Specialized Fine-Tuning (ESFT), end to end, on a small LibTorch mixture-of-experts model
// (tiny_moe.hpp: 8 experts per layer, top-2 routing), in both expert layouts:
//   1. pretrain the model on one real text (all parameters train);
//   2. run it over a few batches of a second text (the task) and feed every layer's routing to
//      layerfreeze::ExpertStats; write ESFT expert configs by both of ESFT's rules (token
//      selection ratio, p 0.2; average gate score, p 0.1);
//   3. fine-tune on the task under full fine-tuning and under preset:esft with each config, the
//      executor applying the plan (masks inside fused tensors) in an ordinary AdamW loop;
//   4. print a table: trainable share, measured gradient + AdamW bytes (and the estimate of
//      get_memory_savings_estimate), loss on the task text and on the pretraining text, and
//      whether every frozen parameter and expert slice is bit-identical to the pretrained one.
//
//   esft_finetune [--pretrain-steps 300] [--stats-batches 8] [--steps 120] [--layers 3]
//                 [--pretrain-text FILE] [--task-text FILE] [--workdir DIR]
//
// The task text defaults to this program's own C++ source: code routes differently from the
// English of the pretraining licence, so the experts a task uses stand out.
#include <ATen/Parallel.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>
#include <layerfreeze/expert_stats.hpp>
#include <layerfreeze/layerfreeze.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "../char_gpt.hpp"  // read_text
#include "tiny_moe.hpp"

namespace {

struct Args {
  int64_t pretrain_steps = 300, stats_batches = 8, steps = 120, layers = 3, tokens = 1024;
  std::string pretrain_text = "/usr/share/common-licenses/GPL-3";
  std::string task_text = __FILE__;
  std::string workdir = "/tmp/layerfreeze-esft";
};

tiny_moe::Config config(const Args& a, bool fused) {
  tiny_moe::Config c;
  c.vocab = 128;  // bytes (char_gpt::read_text maps the rest to '?')
  c.layers = a.layers;
  c.fused = fused;
  return c;
}

// `n` random (token, next token) pairs of a text.
std::pair<torch::Tensor, torch::Tensor> pairs(const torch::Tensor& text, int64_t n) {
  auto at = torch::randint(0, text.size(0) - 1, {n}, torch::kLong);
  return {text.index({at}), text.index({at + 1})};
}

double loss_on(tiny_moe::TinyMoe& m, const torch::Tensor& in, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(m->forward(in), target).item<double>();
}

// Mean next-token loss over evenly spaced positions of the whole text (the same for every run).
double eval_loss(tiny_moe::TinyMoe& m, const torch::Tensor& text) {
  torch::NoGradGuard no_grad;
  const int64_t n = std::min<int64_t>(8192, text.size(0) - 1);
  auto at = torch::linspace(0, static_cast<double>(text.size(0) - 2), n).to(torch::kLong);
  return loss_on(m, text.index({at}), text.index({at + 1}));
}

std::vector<torch::Tensor> snapshot(tiny_moe::TinyMoe& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m->parameters()) out.push_back(p.detach().clone());
  return out;
}

void restore(tiny_moe::TinyMoe& m, const std::vector<torch::Tensor>& weights) {
  torch::NoGradGuard no_grad;
  auto ps = m->parameters();
  for (size_t i = 0; i < ps.size(); ++i) ps[i].copy_(weights[i]);
}

// Gradient and AdamW-state bytes held now (the compact tensors of fused ones included).
int64_t grad_and_state_bytes(tiny_moe::TinyMoe& m, torch::optim::AdamW& opt) {
  const auto kept = layerfreeze::kept_bytes(m->parameters(), opt);
  return kept.gradients + kept.optimizer_state;
}

struct Row {
  std::string layout, strategy;
  double trainable_pct = 0, task_before = 0, task_after = 0, pre_after = 0;
  int64_t measured = 0, estimated = 0;
  bool frozen_intact = true;
};

// Pretraining: every parameter trains.
std::vector<torch::Tensor> pretrain(const Args& a, tiny_moe::TinyMoe& m,
                                    const torch::Tensor& text) {
  torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(3e-3));
  for (int64_t s = 1; s <= a.pretrain_steps; ++s) {
    auto [in, target] = pairs(text, a.tokens);
    auto loss = torch::nn::functional::cross_entropy(m->forward(in), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  return snapshot(m);
}

// Routing statistics on the task text; writes both ESFT configs, returns their paths.
std::map<std::string, std::string> expert_configs(const Args& a, tiny_moe::TinyMoe& m,
                                                  const torch::Tensor& task,
                                                  const std::string& tag) {
  torch::NoGradGuard no_grad;
  layerfreeze::ExpertStats stats(m->cfg.experts, m->cfg.top_k);
  for (int64_t b = 0; b < a.stats_batches; ++b) {
    m->forward(pairs(task, a.tokens).first);
    for (size_t l = 0; l < m->layers.size(); ++l) {
      auto& moe = m->layers[l]->mlp;
      auto idx = moe->last_indices.contiguous();
      auto w = moe->last_weights.to(torch::kFloat).contiguous();
      stats.add(static_cast<int32_t>(l), idx.data_ptr<int64_t>(), w.data_ptr<float>(), idx.size(0));
    }
  }
  std::map<std::string, std::string> paths;
  for (auto [name, rule, p] :
       {std::tuple{"ESFT-Token", layerfreeze::ExpertStats::Rule::kToken, 0.2},
        std::tuple{"ESFT-Gate", layerfreeze::ExpertStats::Rule::kGate, 0.1}}) {
    std::string path = a.workdir + "/" + tag + "-" + name + ".json";
    stats.write(path, rule, p);
    std::printf("  %s (p %.1f): %s", name, p, stats.esft_json(rule, p).c_str());
    paths[name] = path;
  }
  return paths;
}

Row finetune(const Args& a, bool fused, const std::vector<torch::Tensor>& pretrained,
             const std::string& strategy, const std::string& rules,
             const std::vector<std::string>& sets, const torch::Tensor& pre,
             const torch::Tensor& task) {
  torch::manual_seed(2);
  tiny_moe::TinyMoe m(config(a, fused));
  restore(m, pretrained);
  Row r{fused ? "fused" : "per-expert", strategy};
  r.task_before = eval_loss(m, task);
  layerfreeze::PlanOptions po;
  po.sets = sets;
  layerfreeze::Executor ex(*m, rules, po);
  torch::optim::AdamW opt(ex.trainable_parameters(),
                          torch::optim::AdamWOptions(3e-3).weight_decay(0.01));
  ex.attach_optimizer(opt);
  if (strategy == "ESFT-Token") std::printf("%s", ex.plan_text().c_str());
  for (int64_t step = 0; step < a.steps; ++step) {
    ex.on_step(step);
    auto [in, target] = pairs(task, a.tokens);
    auto loss = torch::nn::functional::cross_entropy(m->forward(in), target);
    opt.zero_grad();
    loss.backward();
    // Tensors frozen in part train through compact tensors the optimizer holds (docs/ROWS.md):
    // before_optimizer_step, opt.step(), after_optimizer_step in one call.
    ex.step_optimizer();
  }
  r.task_after = eval_loss(m, task);
  r.pre_after = eval_loss(m, pre);
  r.trainable_pct = 100.0 * static_cast<double>(ex.trainable_numel()) /
                    static_cast<double>(ex.trainable_numel() + ex.frozen_numel());
  r.measured = grad_and_state_bytes(m, opt);
  int64_t total_bytes = 0;
  for (const auto& p : m->parameters()) total_bytes += p.nbytes();
  auto saved = layerfreeze::get_memory_savings_estimate(*m, layerfreeze::OptimizerKind::AdamW);
  r.estimated = 3 * total_bytes - saved.gradient_saved_bytes - saved.optimizer_saved_bytes;
  // Frozen means bit-identical: whole tensors and the frozen experts of fused ones.
  auto now = ex.parameters();
  auto names = m->named_parameters(true);
  std::map<std::string, size_t> order;
  for (size_t i = 0; i < names.size(); ++i) order[names.keys()[i]] = i;
  for (size_t i = 0; i < now.size(); ++i) {
    const auto& before = pretrained[order.at(ex.inventory().params()[i].name)];
    if (ex.is_frozen(i)) r.frozen_intact = r.frozen_intact && torch::equal(now[i], before);
    for (int32_t e : ex.frozen_experts(i))
      r.frozen_intact = r.frozen_intact && torch::equal(now[i][e], before[e]);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  Args a;
  for (int i = 1; i < argc; i += 2) {
    std::string k = argv[i], v = i + 1 < argc ? argv[i + 1] : "";
    if (k == "--pretrain-steps" && !v.empty())
      a.pretrain_steps = std::stoll(v);
    else if (k == "--stats-batches" && !v.empty())
      a.stats_batches = std::stoll(v);
    else if (k == "--steps" && !v.empty())
      a.steps = std::stoll(v);
    else if (k == "--layers" && !v.empty())
      a.layers = std::stoll(v);
    else if (k == "--pretrain-text" && !v.empty())
      a.pretrain_text = v;
    else if (k == "--task-text" && !v.empty())
      a.task_text = v;
    else if (k == "--workdir" && !v.empty())
      a.workdir = v;
    else {
      std::fprintf(stderr,
                   "usage: %s [--pretrain-steps N] [--stats-batches N] [--steps N] [--layers N] "
                   "[--pretrain-text FILE] [--task-text FILE] [--workdir DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  std::string mk = "mkdir -p '" + a.workdir + "'";
  if (std::system(mk.c_str()) != 0) return 1;
  auto pre = char_gpt::read_text(a.pretrain_text), task = char_gpt::read_text(a.task_text);
  if (pre.size(0) < 2 || task.size(0) < 2) {
    std::fprintf(stderr, "cannot read the texts %s and %s\n", a.pretrain_text.c_str(),
                 a.task_text.c_str());
    return 1;
  }
  std::ofstream(a.workdir + "/full.yaml") << "# full fine-tuning: nothing frozen\nrules: []\n";
  std::vector<Row> rows;
  for (bool fused : {true, false}) {
    torch::manual_seed(0);
    tiny_moe::TinyMoe m(config(a, fused));
    const std::string tag = fused ? "fused" : "per-expert";
    std::printf("== %s experts: pretraining on %s (%lld parameters, %lld steps)\n", tag.c_str(),
                a.pretrain_text.c_str(),
                static_cast<long long>(layerfreeze::get_trainable_params(*m)),
                static_cast<long long>(a.pretrain_steps));
    auto pretrained = pretrain(a, m, pre);
    std::printf("   pretrained: loss %.3f on the pretraining text, %.3f on the task text\n",
                eval_loss(m, pre), eval_loss(m, task));
    std::printf("== %s experts: routing statistics on %s (%lld batches)\n", tag.c_str(),
                a.task_text.c_str(), static_cast<long long>(a.stats_batches));
    auto configs = expert_configs(a, m, task, tag);
    rows.push_back(finetune(a, fused, pretrained, "full fine-tuning", a.workdir + "/full.yaml", {},
                            pre, task));
    for (const auto& name : {"ESFT-Token", "ESFT-Gate"}) {
      std::printf("== %s experts: fine-tuning under preset:esft with %s\n", tag.c_str(), name);
      rows.push_back(finetune(a, fused, pretrained, name, "preset:esft",
                              {"expert_config=" + configs.at(name)}, pre, task));
    }
  }
  std::printf("\nfine-tuned %lld steps on %s (pretrained on %s)\n", static_cast<long long>(a.steps),
              a.task_text.c_str(), a.pretrain_text.c_str());
  std::printf("%-11s %-17s %10s %12s %12s %18s %10s %8s\n", "layout", "strategy", "trainable",
              "grad+Adam B", "estimate B", "task loss", "pretrain", "frozen");
  bool ok = true;
  for (const auto& r : rows) {
    ok = ok && r.frozen_intact && r.measured == r.estimated;
    std::printf("%-11s %-17s %9.1f%% %12lld %12lld %8.3f -> %6.3f %10.3f %8s\n", r.layout.c_str(),
                r.strategy.c_str(), r.trainable_pct, static_cast<long long>(r.measured),
                static_cast<long long>(r.estimated), r.task_before, r.task_after, r.pre_after,
                r.frozen_intact ? "intact" : "MOVED");
  }
  std::printf(
      "\ntrainable: parameters that train (the frozen experts of a fused tensor count as frozen);\n"
      "grad+Adam B: gradient and AdamW-state bytes after the last step, measured; estimate B: the\n"
      "same from get_memory_savings_estimate. A fused expert tensor frozen in part keeps gradient\n"
      "and state for its trainable experts only (docs/ROWS.md): both layouts pay the same.\n"
      "task loss: on the task text before -> after; pretrain: loss on the pretraining text after\n"
      "(lower = less forgotten); frozen: every frozen tensor and expert slice bit-identical.\n");
  if (!ok) std::fprintf(stderr, "a frozen slice moved, or the estimate differs from the bytes\n");
  return ok ? 0 : 1;
}
