#pragma once
// `vitprobe launch -n N -- SUBCOMMAND ...`: starts N local ranks of one vitprobe command with the variables
// torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and waits for them;
// like torchrun, the first rank that fails stops the others.
#include <string>
#include <vector>

namespace vitprobe {

struct LaunchOptions {
  int processes = 2;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port of this host
  double grace_s = 10;  // after a failure, how long the others get to stop on SIGTERM before SIGKILL
};

/// Runs `arguments` (a vitprobe subcommand and its options) in `processes` ranks of this executable.
/// Returns 0 when all succeed, else the exit code of the first rank that failed (128 + signal when killed).
/// Throws BadInput for no arguments or processes < 1, IoError when a process cannot be started.
int launch_local(const LaunchOptions& options, const std::vector<std::string>& arguments);

/// A TCP port that is free on this host right now.
int free_local_port();

}  // namespace vitprobe
