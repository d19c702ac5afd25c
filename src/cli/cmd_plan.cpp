// layerfreeze plan RULES --model MODEL : the compiled plan, as text, JSON, Markdown, SVG or a
// self-contained HTML report;
// --svg FILE writes the picture beside any format; --distributed adds the data-parallel lint
// (analysis/distributed_lint.hpp).
#include "cli/cli_common.hpp"
#include "cli/plan_lock.hpp"
#include "core/file_access.hpp"
#include "core/json_text.hpp"

#include <fstream>

namespace layerfreeze::cli {

std::function<int()> setup_plan(CLI::App& cmd) {
  struct Args : PlanArgs {
    std::string format = "text";
    bool distributed = false;
    std::string svg, lock;
    int64_t cache_samples = 0, seq_len = 0;
  };
  auto a = std::make_shared<Args>();
  a->add_to(cmd);
  cmd.add_option("--format,-f", a->format, "text, json, markdown, svg or html")
      ->check(CLI::IsMember({"text", "json", "markdown", "svg", "html"}));
  cmd.add_option("--svg", a->svg, "also write the plan as an SVG picture to FILE");
  cmd.add_option("--lock", a->lock,
                 "also write a lock to FILE: what the plan resolves to, for `layerfreeze check`");
  cmd.add_option("--cache-samples", a->cache_samples,
                 "samples in the dataset: the size of a cache of the frozen prefix's output "
                 "(with --seq-len; docs/CACHE.md)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd.add_option("--seq-len", a->seq_len,
                 "tokens a sample: the step cost counts attention and a tied output layer at this "
                 "length; the cache's size (--cache-samples)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd.add_flag(
      "--distributed", a->distributed,
      "also check the plan for data-parallel training (FSDP units, DDP, activation checkpointing)");
  return [a] {
    Session s;
    auto plan = compile_plan(s, *a, a->rules);
    // Text output carries its warnings; JSON and Markdown readers get them on stderr as well.
    s.flush(std::cerr, !plan || a->format != "text");
    if (!plan) return kExitInvalid;
    // One report, every view: the lint is printed among the warnings and under its JSON key.
    if (a->cache_samples > 0 && a->seq_len == 0) {
      std::cerr << "error: --cache-samples needs --seq-len (the cache holds samples × tokens × "
                   "width values)\n";
      return kExitUsage;
    }
    PlanReport sum = plan->report(*parse_optimizer(a->optimizer), horizon_for(*plan, *a),
                                  a->distributed, a->cache_samples, a->seq_len);
    if (a->format != "text")
      for (const auto& w : sum.distributed_warnings()) std::cerr << format_diagnostic(w);
    // Every file is complete before any is written, and each is written atomically: a failure
    // leaves an earlier lock or picture as it was (core/file_access.hpp).
    std::vector<std::pair<std::string, std::string>> files;
    if (!a->svg.empty()) files.emplace_back(a->svg, sum.svg());
    if (!a->lock.empty()) {
      Session again;  // the strategy's own texts, for the lock's digest
      auto strategy = load_rules(again, a->rules, a->section);
      files.emplace_back(a->lock, json_text(lock_json(*a, a->rules, *plan, sum,
                                                      strategy ? strategy->sources().digest() : ""),
                                            2) +
                                      "\n");
    }
    for (const auto& [path, text] : files) {
      std::string error;
      if (!write_file_atomic(path, text, &error)) {
        std::cerr << "error: " << error << "\n";
        return kExitInvalid;
      }
    }
    if (a->format == "json")
      std::cout << sum.json();
    else if (a->format == "markdown")
      std::cout << sum.markdown(a->svg);
    else if (a->format == "svg")
      std::cout << sum.svg();
    else if (a->format == "html")
      std::cout << sum.html();
    else
      std::cout << sum.text();
    keep_until_exit(plan);
    keep_until_exit(sum);
    return kExitOk;
  };
}

}  // namespace layerfreeze::cli
