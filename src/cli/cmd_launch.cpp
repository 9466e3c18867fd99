// `vitprobe launch`: N local ranks of one command, with torchrun's environment variables.
#include "cli_common.h"
#include "jobs/launch_job.h"

namespace vitprobe::cli {

std::vector<std::string>& launch_command() {
  static std::vector<std::string> command;
  return command;
}

Subcommand register_launch(CLI::App& parent) {
  auto options = std::make_shared<LaunchOptions>();
  auto* app = parent.add_subcommand("launch", "Start N local ranks of a distributed command (probe, extract, attn-stats) "
                                              "with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set, as torchrun does");
  app->add_option("-n,--nproc", options->processes, "Processes (ranks) to start on this host")
      ->capture_default_str()
      ->check(thread_count(1));
  app->add_option("--master-addr", options->master_addr, "Rendezvous address given to the ranks")->capture_default_str();
  app->add_option("--master-port", options->master_port, "Rendezvous port (0: a free port)")
      ->capture_default_str()
      ->check(number_in(0, 65535));
  app->add_option("--grace", options->grace_s, "Seconds the other ranks get to stop after one fails, before SIGKILL")
      ->capture_default_str()
      ->check(positive());
  app->footer("Usage: vitprobe launch -n 2 -- probe --model M --data D --out DIR ...\n"
              "Each rank gets cores / N threads unless the command says --threads. Like torchrun, the first rank "
              "that fails stops the others; the exit code is that rank's.\n"
              "On several hosts, start one process per rank yourself with RANK, WORLD_SIZE, MASTER_ADDR and "
              "MASTER_PORT set (or --rank --world-size --master), as torchrun does.");
  return {app, [options]() { return launch_local(*options, launch_command()); }};
}

}  // namespace vitprobe::cli
