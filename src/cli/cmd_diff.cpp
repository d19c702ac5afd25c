// layerfreeze diff RULES_A RULES_B --model MODEL [--epochs N] [--format text|svg|html]
// Exit 0: the plans are the same (one fingerprint); 1: they differ, or an input is invalid.
#include "cli/cli_common.hpp"

#include <algorithm>
#include <sstream>

namespace layerfreeze::cli {

std::function<int()> setup_diff(CLI::App& cmd) {
  struct Args : PlanArgs {
    std::string rules_b, format = "text";
  };
  auto a = std::make_shared<Args>();
  cmd.add_option("RULES_A", a->rules, "first rules file, or preset:NAME")->required();
  cmd.add_option("RULES_B", a->rules_b, "second rules file, or preset:NAME")->required();
  a->add_to(cmd, /*with_rules=*/false);
  cmd.add_option("--format,-f", a->format, "text, svg (side by side) or html (a report)")
      ->check(CLI::IsMember({"text", "svg", "html"}));
  cmd.get_option("--set")->description(
      "override a parameter of whichever strategy declares it: KEY=VALUE");
  return [a] {
    Session s;
    // A --set goes to each strategy that declares the key; a key neither declares is an error.
    auto sa = load_rules(s, a->rules, a->section);
    auto sb = load_rules(s, a->rules_b, a->section);
    if (!sa || !sb) {
      s.flush();
      return kExitInvalid;
    }
    PlanArgs args_a = *a, args_b = *a;
    args_a.sets.clear();
    args_b.sets.clear();
    const auto declares = [](const Strategy& st, const std::string& key) {
      const auto names = st.param_names();
      return std::find(names.begin(), names.end(), key) != names.end();
    };
    for (const auto& set : a->sets) {
      std::string key = set.substr(0, set.find('='));
      bool in_a = declares(*sa, key), in_b = declares(*sb, key);
      if (in_a) args_a.sets.push_back(set);
      if (in_b) args_b.sets.push_back(set);
      if (!in_a && !in_b)
        s.diags.error("unknown-param", "neither strategy declares '" + key + "'",
                      {"--set " + set, 0, 0});
    }
    if (s.diags.has_errors()) {
      s.flush();
      return kExitInvalid;
    }
    auto pa = compile_plan(s, args_a, a->rules);
    auto pb = compile_plan(s, args_b, a->rules_b);
    s.flush(std::cerr, !pa || !pb);
    if (!pa || !pb) return kExitInvalid;
    Time ha = horizon_for(*pa, *a), hb = horizon_for(*pb, *a);
    Time h{std::max(ha.epoch, hb.epoch), std::max(ha.step, hb.step)};
    // Exit 1 when the plans differ in anything a trainer runs (as diff(1) and
    // `git diff --exit-code` do): states, learning rates, policies, parameters or the model.
    bool differ = false;
    std::string text = diff_text(*pa, *pb, h, &differ);
    std::ostringstream report;
    report << "A: " << a->rules << " (fingerprint " << pa->fingerprint() << ")\n"
           << "B: " << a->rules_b << " (fingerprint " << pb->fingerprint() << ")\n"
           << "model: " << pa->inventory().facts().source << "\n"
           << text;
    if (a->format == "text") {
      std::cout << report.str();
    } else {
      if (a->format == "svg")
        std::cout << diff_svg(*pa, *pb, a->rules, a->rules_b, h);
      else
        std::cout << diff_html(*pa, *pb, a->rules, a->rules_b, report.str(), h);
    }
    keep_until_exit(pa);
    keep_until_exit(pb);
    return differ ? kExitInvalid : kExitOk;
  };
}

}  // namespace layerfreeze::cli
