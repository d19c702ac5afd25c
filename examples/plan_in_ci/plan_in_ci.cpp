// plan_in_ci RULES MODEL MIN MAX [KEY=VALUE...]: compiles a freezing strategy against a model,
// prints the plan, and fails (exit 1) when the trainable share of the parameters leaves
// [MIN, MAX] at any change point — the check a project runs in CI before spending a GPU.
// Only the public plan API: no LibTorch header, nothing outside include/layerfreeze/.
#include <layerfreeze/model_source.hpp>
#include <layerfreeze/plan.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: plan_in_ci RULES MODEL MIN MAX [KEY=VALUE...]\n";
    return 2;
  }
  const std::string rules = argv[1], model_spec = argv[2];
  const double lo = std::atof(argv[3]), hi = std::atof(argv[4]);

  layerfreeze::Diagnostics diags;
  layerfreeze::SourceTexts texts;
  auto strategy = layerfreeze::Strategy::load(rules, diags, "", &texts);
  auto model = layerfreeze::load_model(model_spec, diags);
  std::optional<layerfreeze::Plan> plan;
  if (strategy && model) {
    layerfreeze::PlanOptions options;
    for (int i = 5; i < argc; ++i) options.sets.push_back(argv[i]);
    plan = layerfreeze::compile(*strategy, *model, options, diags);
  }
  std::cerr << layerfreeze::format_diagnostics(diags, &texts);
  if (!plan) return 1;

  std::cout << plan->text();
  int failures = 0;
  for (const auto& point : plan->change_points()) {
    const layerfreeze::PlanState s = plan->state_at(point.at);
    const double total = static_cast<double>(s.trainable_numel + s.frozen_numel);
    const double share = total > 0 ? static_cast<double>(s.trainable_numel) / total : 0.0;
    if (share < lo || share > hi) {
      std::cout << "FAIL: at epoch " << point.at.epoch << ", step " << point.at.step
                << " the trainable share is " << share << ", outside [" << lo << ", " << hi
                << "]\n";
      ++failures;
    }
  }
  std::cout << (failures ? "plan check failed" : "plan check passed") << " (fingerprint "
            << plan->fingerprint() << ")\n";
  return failures ? 1 : 0;
}
