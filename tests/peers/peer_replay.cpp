// The layerfreeze side of the peers' side-by-side test (tests/peers/side_by_side.py): runs a
// strategy through the Executor on a TorchScript model, epoch by epoch, with an SGD optimizer
// attached, and prints what a Lightning callback records at the first batch of each epoch — the
// trainable parameters and the optimizer's param groups — as one JSON object per line.
//
//   layerfreeze_peer_replay MODEL.pt RULES EPOCHS LR [--report=METRIC:V0,V1,...] [KEY=VALUE ...]
//
// KEY=VALUE are the rules' --set; --report gives the value of METRIC validation measured at the
// end of each epoch, reported to the executor (metric-triggered stages, FTSEarlyStopping).
#include <torch/csrc/jit/serialization/import.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "layerfreeze/executor.hpp"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: layerfreeze_peer_replay MODEL.pt RULES EPOCHS LR [KEY=VALUE ...]\n";
    return 2;
  }
  try {
    torch::jit::Module model = torch::jit::load(argv[1]);
    layerfreeze::PlanOptions options;
    std::string metric;
    std::vector<double> values;
    for (int i = 5; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg.rfind("--report=", 0) != 0) {
        options.sets.push_back(arg);
        continue;
      }
      const size_t colon = arg.find(':');
      metric = arg.substr(9, colon - 9);
      std::stringstream list(arg.substr(colon + 1));
      for (std::string v; std::getline(list, v, ',');) values.push_back(std::stod(v));
    }
    layerfreeze::Executor ex(model, argv[2], options);
    torch::optim::SGD opt(ex.trainable_parameters(),
                          torch::optim::SGDOptions(std::stod(argv[4])).momentum(0.9));
    ex.attach_optimizer(opt);
    std::map<const void*, std::string> names;
    for (const auto& p : model.named_parameters()) names[p.value.unsafeGetTensorImpl()] = p.name;
    const int64_t epochs = std::stoll(argv[3]);
    for (int64_t e = 0; e < epochs; ++e) {
      ex.on_epoch_begin(e);
      std::vector<std::string> trainable;
      for (const auto& p : model.named_parameters())
        if (p.value.requires_grad()) trainable.push_back(p.name);
      std::sort(trainable.begin(), trainable.end());
      nlohmann::json groups = nlohmann::json::array();
      for (const auto& g : opt.param_groups()) {
        std::vector<std::string> in;
        for (const auto& t : g.params()) in.push_back(names.at(t.unsafeGetTensorImpl()));
        std::sort(in.begin(), in.end());
        groups.push_back({{"lr", g.options().get_lr()}, {"params", in}});
      }
      std::cout << nlohmann::json{{"epoch", e}, {"trainable", trainable}, {"groups", groups}}.dump()
                << "\n";
      if (static_cast<size_t>(e) < values.size()) ex.report(metric, values[e]);
    }
  } catch (const layerfreeze::DiagnosticError& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
