// A ResNet-style model with BatchNorm, fine-tuned with its stem and first stage frozen. Frozen
// BatchNorm layers must stay in eval mode — their running statistics are part of what "frozen"
// means — even though the training loop calls model->train() every epoch, which switches every
// submodule back to training. The rules say so with `batchnorm: eval_when_frozen`.
#include <ATen/Parallel.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <layerfreeze/executor.hpp>
#include <layerfreeze/layerfreeze.hpp>

#include <cstdio>
#include <fstream>

namespace nn = torch::nn;

struct StageImpl : nn::Module {  // conv + BatchNorm + ReLU, twice
  StageImpl(int64_t cin, int64_t cout, int64_t stride) {
    conv1 = register_module(
        "conv1", nn::Conv2d(nn::Conv2dOptions(cin, cout, 3).stride(stride).padding(1).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(cout));
    conv2 = register_module("conv2",
                            nn::Conv2d(nn::Conv2dOptions(cout, cout, 3).padding(1).bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(cout));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::relu(bn2->forward(conv2->forward(torch::relu(bn1->forward(conv1->forward(x))))));
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(Stage);

struct ResNetImpl : nn::Module {  // torchvision's names: conv1, bn1, layer1..layer3, fc
  ResNetImpl() {
    conv1 =
        register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, 16, 3).padding(1).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(16));
    layer1 = register_module("layer1", nn::Sequential(Stage(16, 16, 1)));
    layer2 = register_module("layer2", nn::Sequential(Stage(16, 32, 2)));
    layer3 = register_module("layer3", nn::Sequential(Stage(32, 64, 2)));
    fc = register_module("fc", nn::Linear(64, 10));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(bn1->forward(conv1->forward(x)));
    y = layer3->forward(layer2->forward(layer1->forward(y)));
    return fc->forward(y.mean({2, 3}));
  }
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr};
  nn::Linear fc{nullptr};
};
TORCH_MODULE(ResNet);

int main(int argc, char** argv) {
  at::set_num_threads(1);
  int64_t epochs = argc > 1 ? std::stoll(argv[1]) : 3, steps = argc > 2 ? std::stoll(argv[2]) : 5;
  const char* rules_path = "/tmp/layerfreeze-resnet-rules.yaml";
  std::ofstream(rules_path)
      << "# Freeze the stem and the first stage; keep their BatchNorms in eval mode.\n"
         "options: {batchnorm: eval_when_frozen}\n"
         "rules:\n"
         "  - freeze: [embeddings, {layers: 0}]\n";
  torch::manual_seed(0);
  ResNet model;
  layerfreeze::Executor ex(*model, rules_path);
  torch::optim::SGD opt(ex.trainable_parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  ex.attach_optimizer(opt);
  auto stem_stats = model->bn1->running_mean.clone();
  auto stage3_stats = model->layer3[0]->as<Stage>()->bn1->running_mean.clone();
  for (int64_t epoch = 0, step = 0; epoch < epochs; ++epoch) {
    model->train();  // every training loop does this; it would put the frozen BatchNorms back in
                     // training
    ex.on_epoch_begin(epoch);
    for (int64_t s = 0; s < steps; ++s, ++step) {
      ex.on_step(step);
      auto x =
          torch::randn({8, 3, 16, 16}) * 2 + 1;  // a shifted distribution: statistics would drift
      auto target = torch::randint(0, 10, {8});
      auto loss = torch::nll_loss(torch::log_softmax(model->forward(x), 1), target);
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
    std::printf(
        "epoch %lld: stem BatchNorm in %s mode, its running mean moved by %.3g; stage 3's moved by "
        "%.3g\n",
        static_cast<long long>(epoch), model->bn1->is_training() ? "training" : "eval",
        (model->bn1->running_mean - stem_stats).abs().max().item<double>(),
        (model->layer3[0]->as<Stage>()->bn1->running_mean - stage3_stats)
            .abs()
            .max()
            .item<double>());
  }
  std::printf("%s", layerfreeze::layer_status(*model).c_str());
  bool ok = torch::equal(model->bn1->running_mean, stem_stats) && !model->bn1->is_training();
  std::printf("frozen BatchNorm statistics %s\n", ok ? "unchanged" : "CHANGED");
  return ok ? 0 : 1;
}
