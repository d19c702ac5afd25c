// The layerfreeze side of the PEFT comparison (tests/peers/token_rows.py): trains a TorchScript
// language model (logits = model(ids)) for a few AdamW steps through the Executor — a rules file
// that cuts token rows (`{tokens: ...}`), the optimizer holding compact tensors of the rows that
// train (step_optimizer) — and writes every parameter afterwards, with the bytes of optimizer
// state and gradient it kept.
//
//   layerfreeze_token_rows MODEL.pt RULES BATCHES.txt LR WEIGHT_DECAY OUT.bin
//
// BATCHES.txt: one batch per line, `B T id id ...` (B×T token ids); the loss of a batch is the
// next-token cross entropy over its sequences. OUT.bin: per parameter, a line `name numel` and
// numel float32 values (little-endian); stdout: one JSON object with the kept bytes.
#include <torch/csrc/jit/serialization/import.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "layerfreeze/executor.hpp"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::cerr
        << "usage: layerfreeze_token_rows MODEL.pt RULES BATCHES.txt LR WEIGHT_DECAY OUT.bin\n";
    return 2;
  }
  try {
    torch::jit::Module model = torch::jit::load(argv[1]);
    model.train();
    layerfreeze::Executor ex(model, argv[2]);
    torch::optim::AdamW opt(
        ex.trainable_parameters(),
        torch::optim::AdamWOptions(std::stod(argv[4])).weight_decay(std::stod(argv[5])));
    ex.attach_optimizer(opt);
    std::ifstream batches(argv[3]);
    int64_t step = 0;
    for (std::string line; std::getline(batches, line); ++step) {
      std::istringstream in(line);
      int64_t b = 0, t = 0;
      in >> b >> t;
      std::vector<int64_t> ids(static_cast<size_t>(b * t));
      for (auto& id : ids) in >> id;
      torch::Tensor x = torch::tensor(ids, torch::kLong).view({b, t});
      ex.on_step(step);
      opt.zero_grad();
      torch::Tensor logits = model.forward({x}).toTensor();
      const int64_t v = logits.size(2);
      torch::Tensor loss = torch::nn::functional::cross_entropy(
          logits.slice(1, 0, t - 1).reshape({-1, v}), x.slice(1, 1, t).reshape({-1}));
      loss.backward();
      ex.step_optimizer();
    }
    // What the optimizer keeps: its state tensors and the gradients of the tensors it holds.
    int64_t state_bytes = 0, grad_bytes = 0;
    for (const auto& group : opt.param_groups())
      for (const auto& p : group.params()) {
        if (p.grad().defined()) grad_bytes += p.grad().numel() * p.grad().element_size();
        auto it = opt.state().find(p.unsafeGetTensorImpl());
        if (it == opt.state().end()) continue;
        const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
        for (const torch::Tensor* t : {&s.exp_avg(), &s.exp_avg_sq(), &s.max_exp_avg_sq()})
          if (t->defined()) state_bytes += t->numel() * t->element_size();
      }
    std::ofstream out(argv[6], std::ios::binary);
    for (const auto& p : model.named_parameters()) {
      torch::Tensor v = p.value.detach().to(torch::kFloat).contiguous();
      out << p.name << " " << v.numel() << "\n";
      out.write(reinterpret_cast<const char*>(v.data_ptr<float>()),
                static_cast<std::streamsize>(v.numel() * sizeof(float)));
    }
    std::cout << nlohmann::json{{"steps", step},
                                {"optimizer_state_bytes", state_bytes},
                                {"kept_gradient_bytes", grad_bytes}}
                     .dump()
              << "\n";
  } catch (const std::exception& e) {
    std::cerr << "layerfreeze_token_rows: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
