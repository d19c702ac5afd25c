// layerfreeze explain RULES --model MODEL --param NAME [--epoch E] [--step S]
#include "cli/cli_common.hpp"

namespace layerfreeze::cli {

std::function<int()> setup_explain(CLI::App& cmd) {
  struct Args : PlanArgs {
    std::string param;
    int64_t epoch = 0, step = 0;
  };
  auto a = std::make_shared<Args>();
  a->add_to(cmd);
  cmd.add_option("--param,-p", a->param, "parameter name (any alias)")->required();
  cmd.add_option("--epoch", a->epoch, "epoch (0-based)");
  cmd.add_option("--step", a->step, "global step (0-based)");
  return [a] {
    Session s;
    auto plan = compile_plan(s, *a, a->rules);
    s.flush(std::cerr, !plan);
    if (!plan) return kExitInvalid;
    const Inventory& inv = plan->inventory();
    auto idx = inv.find(a->param);
    if (!idx) {
      for (const auto& np : inv.facts().non_params)
        if (np.name == a->param) {
          std::cerr << "error: '" << a->param << "' in " << inv.facts().source
                    << " is not a parameter but " << np.kind
                    << ": it is never counted, frozen or trained [not-a-parameter]\n";
          return kExitInvalid;
        }
      std::vector<std::string> names;
      for (const auto& p : inv.params()) {
        names.push_back(p.name);
        for (const auto& al : p.aliases) names.push_back(al);
      }
      std::cerr << "error: no parameter '" << a->param << "' in " << inv.facts().source
                << did_you_mean(a->param, names) << " [unknown-param]\n";
      return kExitInvalid;
    }
    Time t{a->epoch, a->step};
    if (!plan->uses_steps() && plan->steps_per_epoch() && a->step == 0)
      t.step = a->epoch * *plan->steps_per_epoch();
    std::cout << *plan->explain(a->param, t, horizon_for(*plan, *a));
    keep_until_exit(plan);
    return kExitOk;
  };
}

}  // namespace layerfreeze::cli
