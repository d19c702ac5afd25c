// layerfreeze: the command line. Thin: each subcommand lives in its own file and registers in
// the table of cli_common; this file parses the arguments and maps errors to exit codes.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "cli/cli_common.hpp"
#include "cli/safe_output.hpp"

int main(int argc, char** argv) {
  using namespace layerfreeze::cli;
  // No control character reaches the terminal raw, from any command (cli/safe_output.hpp).
  SafeOutput safe_out(std::cout), safe_err(std::cerr);
  install_torchscript_loader();
  CLI::App app{
      "layerfreeze: declarative freezing strategies for LibTorch models, compiled to a plan"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("layerfreeze ") + LAYERFREEZE_VERSION_TEXT);
  std::function<int()> run;
  for (const auto& c : commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    auto fn = c.setup(*sub);
    sub->callback([&run, fn] { run = fn; });
  }
  // An unknown first word gets a suggestion, not CLI11's "A subcommand is required".
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    for (const auto& c : commands()) names.push_back(c.name);
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      std::cerr << "error: unknown subcommand '" << argv[1] << "'"
                << layerfreeze::did_you_mean(argv[1], names)
                << "\nRun with --help for more information.\n";
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  int code = kExitUsage;
  try {
    code = run ? run() : kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "layerfreeze: internal error: " << e.what() << "\n";
    return kExitInvalid;
  }
  // What was printed must have been written: a full disk or a closed pipe is an error, not 0.
  std::cout.flush();
  if (!std::cout) {
    std::cerr << "error: cannot write the output (standard output): "
              << (errno ? std::strerror(errno) : "write failed") << "\n";
    return kExitInvalid;
  }
  return code;
}
