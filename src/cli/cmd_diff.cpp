// layerfreeze diff RULES_A RULES_B --model MODEL [--epochs N]
#include "cli/cli_common.hpp"
#include "print/explain.hpp"

namespace layerfreeze::cli {

std::function<int()> setup_diff(CLI::App& cmd) {
  struct Args : PlanArgs {
    std::string rules_b;
  };
  auto a = std::make_shared<Args>();
  cmd.add_option("RULES_A", a->rules, "first rules file, or preset:NAME")->required();
  cmd.add_option("RULES_B", a->rules_b, "second rules file, or preset:NAME")->required();
  a->add_to(cmd, /*with_rules=*/false);
  return [a] {
    Session s;
    auto pa = compile_plan(s, *a, a->rules);
    auto pb = compile_plan(s, *a, a->rules_b);
    s.flush(std::cerr, !pa || !pb);
    if (!pa || !pb) return kExitInvalid;
    Time ha = horizon_for(*pa, *a), hb = horizon_for(*pb, *a);
    Time h{std::max(ha.epoch, hb.epoch), std::max(ha.step, hb.step)};
    bool differ = false;
    std::string text = diff_text(*pa, *pb, h, &differ);
    std::cout << "A: " << a->rules << " (fingerprint " << pa->fingerprint() << ")\n"
              << "B: " << a->rules_b << " (fingerprint " << pb->fingerprint() << ")\n"
              << "model: " << pa->inventory->source << "\n";
    std::cout << (differ ? text : "the two plans freeze the same parameters at every time shown\n");
    return kExitOk;
  };
}

}  // namespace layerfreeze::cli
