// The distributed half of the installed package: a trainer linking layerfreeze::distributed
// only, run by the installed `layerfreeze launch --nproc 2`. Each rank agrees on the plan,
// synchronises the trainable gradients and checks that it sent exactly their bytes and that
// every rank ends with the same weights; it exits non-zero otherwise.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <layerfreeze/distributed.hpp>

#include <cstdio>
#include <iostream>

namespace nn = torch::nn;

struct NetImpl : nn::Module {
  NetImpl() {
    embed = register_module("embed", nn::Embedding(32, 16));
    layers = register_module("layers", nn::ModuleList());
    for (int i = 0; i < 4; ++i) layers->push_back(nn::Linear(16, 16));
    head = register_module("head", nn::Linear(16, 32));
  }
  torch::Tensor forward(const torch::Tensor& idx) {
    auto x = embed->forward(idx);
    for (const auto& l : *layers) x = torch::tanh(l->as<nn::Linear>()->forward(x));
    return head->forward(x);
  }
  nn::Embedding embed{nullptr};
  nn::ModuleList layers{nullptr};
  nn::Linear head{nullptr};
};
TORCH_MODULE(Net);

int main() {
  namespace dist = layerfreeze::distributed;
  try {
    auto group = dist::make_process_group();
    torch::manual_seed(7 + group->getRank());
    Net net;
    layerfreeze::PlanOptions po;
    po.values = {{"total_epochs", int64_t{3}}};
    layerfreeze::Executor ex(*net, "preset:gradual_unfreeze", po);
    dist::agree_on_plan(*group, ex);
    dist::broadcast_parameters(*group, *net);
    torch::optim::SGD opt(ex.trainable_parameters(), torch::optim::SGDOptions(0.1));
    ex.attach_optimizer(opt);
    dist::GradientSync sync(group, ex);
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      ex.on_epoch_begin(epoch);
      for (int s = 0; s < 2; ++s) {
        torch::manual_seed(100 * epoch + 10 * s + group->getRank());
        auto idx = torch::randint(0, 32, {4, 6});
        opt.zero_grad();
        auto logits = net->forward(idx).view({-1, 32});
        torch::nll_loss(torch::log_softmax(logits, 1), idx.view({-1})).backward();
        int64_t expected = 0;
        for (const auto& t : ex.trainable_parameters())
          expected += t.numel() * static_cast<int64_t>(t.element_size());
        if (sync.synchronize().bytes != expected) {
          std::fprintf(stderr, "sent other than the trainable gradients\n");
          return 1;
        }
        opt.step();
      }
    }
    // Every rank must hold rank 0's weights.
    at::Tensor mine =
        torch::cat({net->embed->weight.flatten(), net->head->weight.flatten()}).detach();
    std::vector<at::Tensor> in{mine};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < group->getSize(); ++r) out[0].push_back(torch::empty_like(mine));
    group->allgather(out, in)->wait();
    for (const auto& t : out[0])
      if (!torch::equal(t, mine)) {
        std::fprintf(stderr, "rank %d holds other weights than another rank\n", group->getRank());
        return 1;
      }
    std::printf("rank %d of %d: plan %s, %lld bytes sent, weights equal on every rank\n",
                group->getRank(), group->getSize(), ex.fingerprint().c_str(),
                static_cast<long long>(sync.total_bytes()));
  } catch (const layerfreeze::DiagnosticError& e) {
    std::cerr << e.what();
    return 1;
  }
  return 0;
}
