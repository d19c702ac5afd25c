// A trainer that unfreezes on validation-loss plateaus (docs/RULES.md, "Metric triggers") and
// survives being killed: every epoch it validates, reports the loss to the executor and writes a
// checkpoint — weights, optimizer, executor state, the best weights so far — and when started again
// on the same folder it resumes from it. At each metric transition it reloads the best weights,
// as the finetuning-scheduler's restore_best does. A run stopped after any epoch and resumed ends
// with the same weights, bit for bit, as one that was never stopped
// (tests/torch/plateau_trainer_test.sh).
//
//   plateau_trainer --rules examples/strategies/unfreeze_on_plateau.yaml --set top_layers=2
//                   --epochs 8 --workdir /tmp/run [--stop-after 3]
#include <ATen/Parallel.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "layerfreeze/executor.hpp"

namespace fs = std::filesystem;
namespace nn = torch::nn;

// A stack of residual layers and a head: `layers.N` is what discovery calls layers.
struct NetImpl : nn::Module {
  NetImpl() : layers(register_module("layers", nn::ModuleList())) {
    embed = register_module("embed", nn::Linear(8, 32));
    for (int i = 0; i < 6; ++i) layers->push_back(nn::Linear(32, 32));
    head = register_module("head", nn::Linear(32, 1));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = embed->forward(x);
    for (const auto& l : *layers) x = x + torch::tanh(l->as<nn::Linear>()->forward(x));
    return head->forward(x);
  }
  nn::Linear embed{nullptr}, head{nullptr};
  nn::ModuleList layers;
};
TORCH_MODULE(Net);

// The task: y = sin(sum(x)) + noise; the data of a step depends on the step only.
std::pair<torch::Tensor, torch::Tensor> batch(int64_t seed, int64_t n) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 8});
  return {x, torch::sin(x.sum(1, true)) + 0.1 * torch::randn({n, 1})};
}

void save(const torch::nn::Module& m, const std::string& path) {
  // Written whole, then renamed: a kill mid-write leaves the previous file.
  const std::string tmp = path + ".tmp";
  torch::serialize::OutputArchive a;
  m.save(a);
  a.save_to(tmp);
  fs::rename(tmp, path);
}

void load(torch::nn::Module& m, const std::string& path) {
  torch::serialize::InputArchive a;
  a.load_from(path);
  m.load(a);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path + ".tmp") << text;
  fs::rename(path + ".tmp", path);
}

// FNV-1a over every parameter's bytes: equal exactly when the weights are.
uint64_t weights_hash(nn::Module& m) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& p : m.named_parameters()) {
    auto t = p.value().detach().contiguous();
    const auto* b = static_cast<const unsigned char*>(t.data_ptr());
    for (int64_t i = 0; i < t.numel() * static_cast<int64_t>(t.element_size()); ++i)
      h = (h ^ b[i]) * 1099511628211ull;
  }
  return h;
}

int main(int argc, char** argv) {
  std::string rules, workdir;
  int64_t epochs = 8, stop_after = -1;
  layerfreeze::PlanOptions po;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--rules")
      rules = v;
    else if (k == "--workdir")
      workdir = v;
    else if (k == "--epochs")
      epochs = std::stoll(v);
    else if (k == "--stop-after")
      stop_after = std::stoll(v);
    else if (k == "--set")
      po.sets.push_back(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  if (rules.empty() || workdir.empty()) {
    std::cerr << "usage: plateau_trainer --rules RULES --workdir DIR [--epochs N] "
                 "[--stop-after K] [--set K=V]...\n";
    return 2;
  }
  at::set_num_threads(1);  // bit-identical runs
  fs::create_directories(workdir);
  const std::string ckpt = workdir + "/model.pt", optim = workdir + "/optim.pt",
                    state = workdir + "/executor.txt", best = workdir + "/best.pt";
  try {
    torch::manual_seed(0);
    Net net;
    layerfreeze::Executor ex(*net, rules, po);
    torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(3e-3));
    ex.attach_optimizer(opt);
    int64_t start = 0;
    if (fs::exists(state)) {
      // Resume: the executor first (it re-applies the stages that fired, adding their param
      // groups in order), then the weights and the optimizer state that match those groups.
      auto s = layerfreeze::ExecutorState::parse(read_text(state));
      ex.restore(s);
      load(*net, ckpt);
      torch::load(opt, optim);
      start = s.epoch + 1;
      std::cout << "resumed after epoch " << s.epoch << "\n";
    }
    // FTS's restore_best: at a transition a plateau triggered, continue from the best weights.
    ex.on_transition([&](const layerfreeze::Transition& t) {
      std::cout << "epoch " << t.at.epoch << ": " << (t.causes.empty() ? "" : t.causes[0]) << " (+"
                << t.newly_unfrozen << " tensors)";
      if (t.metric && fs::exists(best)) {
        load(*net, best);
        std::cout << ", best weights reloaded";
      }
      std::cout << "\n";
    });
    const auto val = batch(424242, 256);
    for (int64_t e = start; e < epochs; ++e) {
      ex.on_epoch_begin(e);
      for (int64_t s = 0; s < 8; ++s) {
        auto [x, y] = batch(1000 + e * 8 + s, 32);
        auto loss = torch::nn::functional::mse_loss(net->forward(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
      }
      double v = 0;
      {
        torch::NoGradGuard no_grad;
        v = torch::nn::functional::mse_loss(net->forward(val.first), val.second).item<double>();
      }
      // The best weights, for restore_best: saved before the report decides anything.
      const std::string best_value = workdir + "/best_value.txt";
      if (!fs::exists(best_value) || v < std::stod(read_text(best_value))) {
        save(*net, best);
        char text[64];
        std::snprintf(text, sizeof text, "%.17g", v);
        write_text(best_value, text);
      }
      ex.report("val_loss", v);
      std::printf("epoch %lld: val_loss %.6f, %lld trainable\n", static_cast<long long>(e), v,
                  static_cast<long long>(ex.trainable_numel()));
      // The checkpoint of this epoch.
      save(*net, ckpt);
      torch::save(opt, optim + ".tmp");
      fs::rename(optim + ".tmp", optim);
      write_text(state, ex.state().to_string());
      if (e + 1 == stop_after) {
        std::cout << "stopped after epoch " << e << "\n";
        return 0;
      }
    }
    std::printf("final weights %016llx\n", static_cast<unsigned long long>(weights_hash(*net)));
  } catch (const layerfreeze::DiagnosticError& e) {
    std::cerr << e.what();
    return 1;
  }
  return 0;
}
