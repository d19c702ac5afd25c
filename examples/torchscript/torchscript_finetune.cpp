// Fine-tune a TorchScript model exported from Python under a rules file given on the command
// line: the executor applies the plan at every epoch, the optimizer follows it.
//
//   torchscript_finetune MODEL.pt RULES [--set KEY=VALUE]... [--epochs 3] [--steps 10]
//
// The model's forward must take a LongTensor of token ids [batch, seq] and return logits
// [batch, seq, vocab] (a causal language model, as GPT-2 exported with torch.jit.script/trace).
#include <ATen/Parallel.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>
#include <layerfreeze/executor.hpp>
#include <layerfreeze/layerfreeze.hpp>

#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(
        stderr,
        "usage: %s MODEL.pt RULES [--set KEY=VALUE]... [--epochs N] [--steps N] [--vocab N]\n",
        argv[0]);
    return 2;
  }
  at::set_num_threads(1);
  layerfreeze::PlanOptions po;
  int64_t epochs = 3, steps = 10, vocab = 64;
  for (int i = 3; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--set")
      po.sets.push_back(v);
    else if (k == "--epochs")
      epochs = std::stoll(v);
    else if (k == "--steps")
      steps = std::stoll(v);
    else if (k == "--vocab")
      vocab = std::stoll(v);
  }
  torch::jit::Module model = torch::jit::load(argv[1]);
  model.train();
  try {
    layerfreeze::Executor ex(model, argv[2], po);
    std::cout << ex.plan_text(epochs);
    torch::optim::AdamW opt(ex.trainable_parameters(), torch::optim::AdamWOptions(1e-3));
    ex.attach_optimizer(opt);
    torch::manual_seed(0);
    for (int64_t epoch = 0, step = 0; epoch < epochs; ++epoch) {
      ex.on_epoch_begin(epoch);
      double total = 0;
      for (int64_t s = 0; s < steps; ++s, ++step) {
        ex.on_step(step);
        auto ids = torch::randint(0, vocab, {4, 12});  // stand-in data: copy the next token
        auto logits = model.forward({ids}).toTensor();
        auto loss = torch::nn::functional::cross_entropy(
            logits.narrow(1, 0, 11).reshape({-1, vocab}), ids.narrow(1, 1, 11).reshape({-1}));
        opt.zero_grad();
        loss.backward();
        opt.step();
        total += loss.item<double>();
      }
      std::printf("epoch %lld: loss %.4f, %lld parameters train, %zu frozen tensors\n",
                  static_cast<long long>(epoch), total / static_cast<double>(steps),
                  static_cast<long long>(ex.trainable_numel()), ex.frozen_names().size());
    }
    std::cout << layerfreeze::layer_status(model);
  } catch (const layerfreeze::DiagnosticError& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
