// Launcher: starts the ranks of a data-parallel job on this machine, torchrun-style. Each child
// gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; its output
// lines are prefixed with "[rank N] ". When a rank fails the others get a grace period to report
// (a plan disagreement fails every rank on its own), then SIGTERM, then SIGKILL; a whole-job
// timeout bounds a hang. SIGINT, SIGTERM and SIGHUP to the launcher are forwarded to every rank.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace layerfreeze::cli {

struct LaunchOptions {
  int nproc = 1;                  // ranks on this machine
  int nnodes = 1, node_rank = 0;  // machines, and which one this is
  std::string master_addr = "127.0.0.1";
  int master_port = 0;              // 0: a free port on this machine (single node only)
  std::chrono::seconds timeout{0};  // 0: none
  std::chrono::seconds grace{30};   // after the first failure, before SIGTERM
  bool prefix = true;
  std::vector<std::string> command;
};

struct RankExit {
  int rank = 0;
  int code = 0;            // exit status, or 128 + signal
  bool killed = false;     // by the launcher (timeout or after another rank failed)
  bool timed_out = false;  // killed because the job exceeded --timeout
  double seconds = 0;
};

/// The signal that stopped the job (SIGINT on Ctrl-C), or 0.
int stop_signal();

/// Runs the job; returns each rank's exit, in rank order. Throws std::runtime_error when a
/// process cannot be started at all.
std::vector<RankExit> launch(const LaunchOptions& options);

/// A port on 127.0.0.1 that was free a moment ago.
int free_port();

}  // namespace layerfreeze::cli
