// New special tokens on a pretrained model, training only their rows (docs/ROWS.md):
//   1. pretrain the character GPT of char_gpt.hpp (128 byte tokens, head tied to the embedding)
//      on one real text;
//   2. give it four new tokens — <|user|> <|assistant|> <|end|> <|sep|>, ids 128–131 — whose
//      embedding rows start at the mean of the others (what transformers' resize_token_embeddings
//      does by default), and write the task: another text cut into turns marked by those tokens;
//   3. fine-tune under `{tokens: "128:"}` (the four rows of the tied embedding/head), next to
//      unfreezing the whole embedding and full fine-tuning, each through the Executor in an
//      ordinary AdamW loop (step_optimizer: the optimizer holds the trainable rows only);
//   4. print a table: trainable share, measured gradient + AdamW bytes and the plan's estimate,
//      the task loss on the special-token positions, and whether every row and tensor that
//      does not train is bit-identical to the pretrained one.
//
//   special_tokens [--pretrain-steps 300] [--steps 150] [--pretrain-text FILE] [--task-text FILE]
//                  [--workdir DIR]
#include <ATen/Parallel.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>
#include <layerfreeze/layerfreeze.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "../char_gpt.hpp"

namespace {

constexpr int64_t kBase = 128,
                  kNew = 4;  // byte tokens, then <|user|> <|assistant|> <|end|> <|sep|>

struct Args {
  int64_t pretrain_steps = 300, steps = 150, batch = 16;
  std::string pretrain_text = "/usr/share/common-licenses/GPL-3";
  std::string task_text = "/usr/share/common-licenses/MPL-2.0";
  std::string workdir = "/tmp/layerfreeze-special-tokens";
};

char_gpt::Config config(int64_t vocab) {
  char_gpt::Config c;
  c.vocab = vocab;
  return c;
}

// The task: paragraphs as turns, `<|user|> para <|sep|> <|assistant|> next para <|end|>`.
torch::Tensor task_tokens(const torch::Tensor& text) {
  std::vector<int64_t> out;
  auto t = text.accessor<int64_t, 1>();
  std::vector<std::pair<int64_t, int64_t>> paras;  // [begin, end) split at blank lines
  int64_t begin = 0;
  for (int64_t i = 1; i < t.size(0); ++i)
    if (t[i] == '\n' && t[i - 1] == '\n') {
      if (i - 1 > begin) paras.push_back({begin, i - 1});
      begin = i + 1;
    }
  for (size_t p = 0; p + 1 < paras.size(); p += 2) {
    out.push_back(kBase + 0);
    for (int64_t i = paras[p].first; i < paras[p].second; ++i) out.push_back(t[i]);
    out.push_back(kBase + 3);
    out.push_back(kBase + 1);
    for (int64_t i = paras[p + 1].first; i < paras[p + 1].second; ++i) out.push_back(t[i]);
    out.push_back(kBase + 2);
  }
  return torch::tensor(out, torch::kLong);
}

// Loss at the positions whose target is a new token (what the rows are trained to predict).
double special_loss(char_gpt::GPT& model, const torch::Tensor& task) {
  torch::NoGradGuard no_grad;
  const int64_t len = model->cfg.ctx + 1, windows = 32;
  const int64_t stride = std::max<int64_t>(1, (task.size(0) - len) / windows);
  auto starts = torch::arange(windows) * stride;
  auto batch = task.index({(starts.unsqueeze(1) + torch::arange(len).unsqueeze(0)).reshape({-1})})
                   .reshape({windows, len});
  auto in = batch.narrow(1, 0, len - 1), target = batch.narrow(1, 1, len - 1).reshape({-1});
  auto logits = model->forward(in).reshape({-1, model->cfg.vocab});
  auto mask = target >= kBase;
  if (mask.sum().item<int64_t>() == 0) return 0;
  return torch::nn::functional::cross_entropy(logits.index({mask}), target.index({mask}))
      .item<double>();
}

std::map<std::string, torch::Tensor> snapshot(char_gpt::GPT& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m->named_parameters(true)) out[p.key()] = p.value().detach().clone();
  return out;
}

struct Row {
  std::string strategy;
  double trainable_pct = 0, before = 0, after = 0;
  int64_t measured = 0, estimated = 0;
  bool intact = true;
};

Row finetune(const Args& a, const std::map<std::string, torch::Tensor>& start,
             const std::string& strategy, const std::string& rules, const torch::Tensor& task) {
  torch::manual_seed(3);
  char_gpt::GPT m(config(kBase + kNew));
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : m->named_parameters(true)) p.value().copy_(start.at(p.key()));
  }
  Row r{strategy};
  r.before = special_loss(m, task);
  layerfreeze::Executor ex(*m, rules);
  if (strategy == "new tokens") std::printf("%s", ex.plan_text().c_str());
  torch::optim::AdamW opt(ex.trainable_parameters(),
                          torch::optim::AdamWOptions(1e-2).weight_decay(0.01));
  ex.attach_optimizer(opt);
  for (int64_t step = 0; step < a.steps; ++step) {
    ex.on_step(step);
    auto loss = m->loss(char_gpt::sample(task, a.batch, m->cfg.ctx + 1));
    opt.zero_grad();
    loss.backward();
    ex.step_optimizer();  // gather the trainable rows, opt.step(), scatter them back
  }
  r.after = special_loss(m, task);
  r.trainable_pct = 100.0 * static_cast<double>(ex.trainable_numel()) /
                    static_cast<double>(ex.trainable_numel() + ex.frozen_numel());
  const auto kept = layerfreeze::kept_bytes(m->parameters(), opt);
  r.measured = kept.gradients + kept.optimizer_state;
  // The plan's memory line at the last step: what it says a step keeps.
  const auto stages = ex.plan().report(layerfreeze::OptimizerKind::AdamW).stages();
  r.estimated = stages.back().gradient_bytes + stages.back().optimizer_bytes;
  // Frozen means bit-identical: whole tensors, and the frozen rows of a tensor cut in rows.
  auto now = ex.parameters();
  for (size_t i = 0; i < now.size(); ++i) {
    const auto& before = start.at(ex.inventory().params()[i].name);
    if (ex.is_frozen(i)) r.intact = r.intact && torch::equal(now[i], before);
    for (int32_t row : ex.frozen_slices(i))
      r.intact = r.intact && torch::equal(now[i][row], before[row]);
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
    else if (k == "--steps" && !v.empty())
      a.steps = std::stoll(v);
    else if (k == "--pretrain-text" && !v.empty())
      a.pretrain_text = v;
    else if (k == "--task-text" && !v.empty())
      a.task_text = v;
    else if (k == "--workdir" && !v.empty())
      a.workdir = v;
    else {
      std::fprintf(stderr,
                   "usage: %s [--pretrain-steps N] [--steps N] [--pretrain-text FILE] "
                   "[--task-text FILE] [--workdir DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  std::string mk = "mkdir -p '" + a.workdir + "'";
  if (std::system(mk.c_str()) != 0) return 1;
  auto pre = char_gpt::read_text(a.pretrain_text);
  auto task = task_tokens(char_gpt::read_text(a.task_text));
  if (pre.size(0) < 2 || task.size(0) < 200) {
    std::fprintf(stderr, "cannot read the texts %s and %s\n", a.pretrain_text.c_str(),
                 a.task_text.c_str());
    return 1;
  }
  // 1. Pretrain with the 128 byte tokens.
  torch::manual_seed(0);
  char_gpt::GPT base(config(kBase));
  {
    torch::optim::AdamW opt(base->parameters(), torch::optim::AdamWOptions(3e-3));
    for (int64_t s = 0; s < a.pretrain_steps; ++s) {
      auto loss = base->loss(char_gpt::sample(pre, a.batch, base->cfg.ctx + 1));
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
  }
  // 2. Four new rows at the mean of the others; every other tensor as pretrained.
  std::map<std::string, torch::Tensor> start = snapshot(base);
  for (const char* name : {"transformer.wte.weight", "lm_head.weight"}) {
    auto w = start.at(name);
    start[name] = torch::cat({w, w.mean(0, true).expand({kNew, w.size(1)})}).contiguous();
  }
  std::printf("pretrained %lld steps on %s; task: %s as %lld tokens with 4 new ones\n",
              static_cast<long long>(a.pretrain_steps), a.pretrain_text.c_str(),
              a.task_text.c_str(), static_cast<long long>(task.size(0)));
  const std::string rows = a.workdir + "/new_tokens.yaml";
  std::ofstream(rows) << "# train only the rows of the new tokens (tied embedding and head)\n"
                         "rules:\n  - freeze: all\n  - unfreeze: {tokens: \"128:\"}\n";
  const std::string emb = a.workdir + "/embeddings.yaml";
  std::ofstream(emb) << "# the whole embedding, under both names of the tied tensor\n"
                        "rules:\n  - freeze: all\n"
                        "  - unfreeze: [embeddings, {regex: 'lm_head\\.weight'}]\n";
  const std::string full = a.workdir + "/full.yaml";
  std::ofstream(full) << "# full fine-tuning: nothing frozen\nrules: []\n";
  std::vector<Row> table = {finetune(a, start, "new tokens", rows, task),
                            finetune(a, start, "whole embedding", emb, task),
                            finetune(a, start, "full fine-tuning", full, task)};
  std::printf("\nfine-tuned %lld steps on the task\n%-17s %10s %12s %12s %18s %8s\n",
              static_cast<long long>(a.steps), "strategy", "trainable", "grad+Adam B", "estimate B",
              "new-token loss", "frozen");
  bool ok = true;
  for (const auto& r : table) {
    ok = ok && r.intact && r.measured == r.estimated;
    std::printf("%-17s %9.3f%% %12lld %12lld %8.3f -> %6.3f %8s\n", r.strategy.c_str(),
                r.trainable_pct, static_cast<long long>(r.measured),
                static_cast<long long>(r.estimated), r.before, r.after,
                r.intact ? "intact" : "MOVED");
  }
  std::printf(
      "\ntrainable: share of the parameters that train; grad+Adam B: gradient and AdamW-state\n"
      "bytes the step keeps after the last step, measured (layerfreeze::kept_bytes); estimate B:\n"
      "the plan's memory line for that step. new-token loss: cross entropy at the positions\n"
      "whose next token is a new one, before -> after. frozen: every tensor and row that does\n"
      "not train is bit-identical to the pretrained model.\n");
  if (!ok) std::fprintf(stderr, "a frozen row moved, or the estimate differs from the bytes\n");
  return ok ? 0 : 1;
}
