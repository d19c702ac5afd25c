// Data-parallel fine-tuning of a small character GPT across N processes with one freezing plan.
// Start it with the launcher (which sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
//
//   layerfreeze launch --nproc 2 -- build/distributed_finetune --rules preset:gradual_unfreeze
//                     --set total_epochs=4
//
// Every rank compiles the plan locally; agree_on_plan() checks they all hold the same one before
// a step runs, broadcast_parameters() makes rank 0's weights everyone's, and GradientSync
// averages only the trainable gradients, re-bucketing when a stage changes what trains. Each
// rank draws its share of one global batch, so the run computes what one process would with the
// whole batch. Each rank prints its loss and the bytes it communicated.
//
// For the tests: --out DIR writes rank-N.txt (a hash of the final weights, the requires_grad
// states, and per step the bytes sent against the trainable and the full gradient bytes);
// --save-weights / --compare-with check the run against a single-process one.
#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>
#include <layerfreeze/distributed.hpp>
#include <layerfreeze/executor.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "../char_gpt.hpp"

namespace {

struct Args {
  std::string rules = "preset:gradual_unfreeze";
  std::vector<std::string> sets;
  int64_t epochs = 4, steps_per_epoch = 6, global_batch = 8, ctx = 32, d = 64, layers = 4;
  int64_t bucket_kb = 25 * 1024;
  double lr = 1e-3, tolerance = 1e-4;
  std::string optimizer = "adamw";
  bool all_gradients = false, overlap = false, quiet = false;
  std::string out, save_weights, compare_with, text = "/usr/share/common-licenses/GPL-3";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(k + " needs a value");
      return argv[++i];
    };
    if (k == "--rules")
      a.rules = next();
    else if (k == "--set")
      a.sets.push_back(next());
    else if (k == "--epochs")
      a.epochs = std::stoll(next());
    else if (k == "--steps-per-epoch")
      a.steps_per_epoch = std::stoll(next());
    else if (k == "--global-batch")
      a.global_batch = std::stoll(next());
    else if (k == "--ctx")
      a.ctx = std::stoll(next());
    else if (k == "--d")
      a.d = std::stoll(next());
    else if (k == "--layers")
      a.layers = std::stoll(next());
    else if (k == "--bucket-kb")
      a.bucket_kb = std::stoll(next());
    else if (k == "--lr")
      a.lr = std::stod(next());
    else if (k == "--optimizer")
      a.optimizer = next();
    else if (k == "--tolerance")
      a.tolerance = std::stod(next());
    else if (k == "--all-gradients")
      a.all_gradients = true;
    else if (k == "--overlap")
      a.overlap = true;
    else if (k == "--quiet")
      a.quiet = true;
    else if (k == "--out")
      a.out = next();
    else if (k == "--save-weights")
      a.save_weights = next();
    else if (k == "--compare-with")
      a.compare_with = next();
    else if (k == "--text")
      a.text = next();
    else
      throw std::invalid_argument("unknown option " + k);
  }
  return a;
}

// FNV-1a over the bytes of every parameter: equal hashes mean bit-identical weights.
uint64_t weights_hash(const std::vector<torch::Tensor>& params) {
  uint64_t h = 1469598103934665603ULL;
  for (const auto& p : params) {
    auto c = p.detach().contiguous();
    auto bytes = static_cast<const unsigned char*>(c.data_ptr());
    for (int64_t i = 0; i < c.numel() * static_cast<int64_t>(c.element_size()); ++i)
      h = (h ^ bytes[i]) * 1099511628211ULL;
  }
  return h;
}

int64_t grad_bytes(const std::vector<torch::Tensor>& params, bool trainable_only) {
  int64_t n = 0;
  for (const auto& p : params)
    if (!trainable_only || p.requires_grad())
      n += p.numel() * static_cast<int64_t>(p.element_size());
  return n;
}

int run(const Args& a) {
  namespace dist = layerfreeze::distributed;
  auto group = dist::make_process_group();
  const int rank = group->getRank(), world = group->getSize();
  if (a.global_batch % world != 0)
    throw std::invalid_argument("--global-batch must be a multiple of the world size");

  // Each rank starts from its own random weights; the broadcast below makes rank 0's everyone's.
  torch::manual_seed(1 + rank);
  char_gpt::Config cfg;
  cfg.ctx = a.ctx;
  cfg.d = a.d;
  cfg.layers = a.layers;
  char_gpt::GPT model(cfg);
  const auto text = char_gpt::read_text(a.text);

  layerfreeze::PlanOptions po;
  po.sets = a.sets;
  po.steps_per_epoch = a.steps_per_epoch;
  layerfreeze::Executor ex(*model, a.rules, po);
  dist::agree_on_plan(*group, ex);
  dist::broadcast_parameters(*group, *model);

  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (a.optimizer == "adamw")
    optimizer = std::make_unique<torch::optim::AdamW>(ex.trainable_parameters(),
                                                      torch::optim::AdamWOptions(a.lr));
  else if (a.optimizer == "sgd")
    optimizer = std::make_unique<torch::optim::SGD>(ex.trainable_parameters(),
                                                    torch::optim::SGDOptions(a.lr).momentum(0.9));
  else
    throw std::invalid_argument("--optimizer is adamw or sgd");
  torch::optim::Optimizer& opt = *optimizer;
  ex.attach_optimizer(opt);
  dist::GradientSyncOptions so;
  so.bucket_bytes = a.bucket_kb * 1024;
  so.all_parameters = a.all_gradients;
  so.overlap = a.overlap;
  dist::GradientSync sync(group, ex, so);

  std::ofstream out;
  if (!a.out.empty()) out.open(a.out + "/rank-" + std::to_string(rank) + ".txt");
  const auto params = ex.parameters();
  const int64_t full_bytes = grad_bytes(params, false);
  const int64_t share = a.global_batch / world;
  double sync_ms = 0, step_ms = 0;
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < a.epochs; ++epoch) {
    ex.on_epoch_begin(epoch);
    double loss_sum = 0;
    int64_t sent = 0;
    for (int64_t s = 0; s < a.steps_per_epoch; ++s, ++step) {
      auto t0 = std::chrono::steady_clock::now();
      ex.on_step(step);
      // One global batch per step, the same on every rank; each rank takes its slice.
      torch::manual_seed(1000 + step);
      auto batch = char_gpt::sample(text, a.global_batch, a.ctx + 1).narrow(0, rank * share, share);
      opt.zero_grad();
      auto loss = model->loss(batch);
      loss.backward();
      auto t1 = std::chrono::steady_clock::now();
      auto stats = sync.synchronize();
      auto t2 = std::chrono::steady_clock::now();
      opt.step();
      step_ms +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      sync_ms += std::chrono::duration<double, std::milli>(t2 - t1).count();
      loss_sum += loss.item<double>();
      sent += stats.bytes;
      if (out)
        out << "step " << step << " sent " << stats.bytes << " trainable "
            << grad_bytes(params, true) << " full " << full_bytes << " buckets " << stats.buckets
            << " rebuilt " << stats.rebuilt << "\n";
    }
    if (!a.quiet)
      std::printf(
          "epoch %lld: loss %.4f · %lld of %lld parameters train · sent %lld bytes/step (full "
          "model %lld)\n",
          static_cast<long long>(epoch), loss_sum / static_cast<double>(a.steps_per_epoch),
          static_cast<long long>(ex.trainable_numel()),
          static_cast<long long>(ex.trainable_numel() + ex.frozen_numel()),
          static_cast<long long>(sent / a.steps_per_epoch), static_cast<long long>(full_bytes));
  }
  const uint64_t hash = weights_hash(params);
  std::string grads;
  for (const auto& p : params) grads += p.requires_grad() ? '1' : '0';
  std::printf(
      "done: weights %016llx · requires_grad %s · %.2f ms/step, of which sync %.2f ms · %lld bytes "
      "sent\n",
      static_cast<unsigned long long>(hash), grads.c_str(), step_ms / static_cast<double>(step),
      sync_ms / static_cast<double>(step), static_cast<long long>(sync.total_bytes()));
  if (out) out << "weights " << std::hex << hash << std::dec << "\nrequires_grad " << grads << "\n";
  if (!a.save_weights.empty()) torch::save(params, a.save_weights);
  if (!a.compare_with.empty()) {
    std::vector<torch::Tensor> ref;
    torch::load(ref, a.compare_with);
    double worst = 0;
    for (size_t i = 0; i < params.size(); ++i)
      worst = std::max(worst, (params[i].detach() - ref.at(i)).abs().max().item<double>());
    std::printf("largest difference from the single-process run: %.3g (tolerance %.3g)\n", worst,
                a.tolerance);
    if (worst > a.tolerance) return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  try {
    return run(parse(argc, argv));
  } catch (const layerfreeze::DiagnosticError& e) {
    std::cerr << e.what();
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
