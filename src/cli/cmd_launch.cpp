// layerfreeze launch --nproc N [--timeout S] -- PROGRAM ARGS... : runs the ranks of a
// data-parallel job on this machine (cli/launcher.hpp), torchrun-style.
#include "cli/cli_common.hpp"
#include "cli/launcher.hpp"

namespace layerfreeze::cli {

namespace {
constexpr int64_t kMaxSeconds = 100000000;  // ~3 years
}  // namespace

std::function<int()> setup_launch(CLI::App& cmd) {
  struct Args {
    LaunchOptions o;
    int64_t timeout = 0, grace = 30;
    bool no_prefix = false;
  };
  auto a = std::make_shared<Args>();
  cmd.add_option("--nproc,-n", a->o.nproc, "ranks to start on this machine")
      ->check(CLI::Range(1, 1024));
  cmd.add_option("--nnodes", a->o.nnodes, "machines in the job")->check(CLI::Range(1, 65536));
  cmd.add_option("--node-rank", a->o.node_rank, "which machine this is, from 0")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--master-addr", a->o.master_addr,
                 "address of rank 0's machine (serves the TCPStore)");
  cmd.add_option("--master-port", a->o.master_port,
                 "port of the TCPStore; default: a free port (single machine)")
      ->check(CLI::Range(1, 65535));
  // Bounded: seconds as a duration overflow past ~292 years of nanoseconds.
  cmd.add_option("--timeout", a->timeout, "stop every rank after this many seconds (0: no limit)")
      ->check(CLI::Range(int64_t{0}, kMaxSeconds));
  cmd.add_option("--grace", a->grace,
                 "after a rank fails, seconds the others get to finish before SIGTERM")
      ->check(CLI::Range(int64_t{0}, kMaxSeconds));
  cmd.add_flag("--no-prefix", a->no_prefix, "do not prefix output lines with [rank N]");
  cmd.add_option("command", a->o.command, "the program and its arguments, after --")->required();
  return [a]() -> int {
    LaunchOptions o = a->o;
    o.timeout = std::chrono::seconds(a->timeout);
    o.grace = std::chrono::seconds(a->grace);
    o.prefix = !a->no_prefix;
    if (o.node_rank >= o.nnodes) {
      std::cerr << "error: --node-rank " << o.node_rank << " is not below --nnodes " << o.nnodes
                << "\n";
      return kExitUsage;
    }
    if (o.nnodes > 1 && o.master_port == 0) {
      std::cerr << "error: a job over " << o.nnodes
                << " machines needs --master-port (and --master-addr), "
                << "the same on every machine\n";
      return kExitUsage;
    }
    std::vector<RankExit> exits;
    try {
      exits = launch(o);
    } catch (const std::exception& e) {
      std::cerr << "layerfreeze launch: " << e.what() << "\n";
      return kExitInvalid;
    }
    // The job's exit code is the one of the rank that failed first (not one stopped by us).
    int code = 0;
    double first = 0;
    bool timed_out = false;
    for (const auto& e : exits) {
      timed_out = timed_out || e.timed_out;
      if (e.code == 0) continue;
      std::cerr << "layerfreeze launch: rank " << e.rank << (e.killed ? " was stopped" : " failed")
                << " (exit " << e.code << ") after " << static_cast<int64_t>(e.seconds * 10) / 10.0
                << " s\n";
      if (!e.killed && (code == 0 || e.seconds < first)) {
        code = e.code;
        first = e.seconds;
      }
    }
    if (code == 0)
      for (const auto& e : exits)
        if (e.code != 0) code = e.code;
    // 128 + the signal when the launcher was stopped; 124 on a timeout, as timeout(1); else the
    // first failing rank's own exit code.
    if (stop_signal()) return 128 + stop_signal();
    if (timed_out) return 124;
    return code == 0 ? kExitOk : (code > 255 ? kExitInvalid : code);
  };
}

}  // namespace layerfreeze::cli
