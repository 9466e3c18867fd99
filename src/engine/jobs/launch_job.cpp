#include "jobs/launch_job.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "common/errors.h"
#include "distributed/process_group.h"

namespace vitprobe {

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw IoError("launch: cannot open a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    throw IoError("launch: cannot find a free port");
  }
  const int port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

namespace {

volatile std::sig_atomic_t received_signal = 0;

void remember_signal(int signal) { received_signal = signal; }

std::string self_executable() {
  char path[4096];
  const ssize_t length = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (length <= 0) throw IoError("launch: cannot find this executable (/proc/self/exe)");
  path[length] = '\0';
  return path;
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "exited with code " + std::to_string(exit_code_of(status));
}

}  // namespace

int launch_local(const LaunchOptions& options, const std::vector<std::string>& arguments) {
  if (arguments.empty()) throw BadInput("launch: no command given (vitprobe launch -n N -- SUBCOMMAND ...)");
  if (options.processes < 1) throw BadInput("launch: -n " + std::to_string(options.processes) + " must be >= 1");
  const std::string& command = arguments.front();
  if (command != "probe" && command != "extract" && command != "attn-stats") {
    throw BadInput("launch: '" + command + "' does not run distributed (probe, extract and attn-stats do)");
  }
  const std::string executable = self_executable();
  const int port = options.master_port > 0 ? options.master_port : free_local_port();
  std::map<pid_t, int> ranks;  // running children
  std::cout.flush();
  std::cerr.flush();
  for (int rank = 0; rank < options.processes; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (const auto& [child, child_rank] : ranks) ::kill(child, SIGKILL);
      throw IoError("launch: cannot start rank " + std::to_string(rank) + ": " + std::strerror(errno));
    }
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(options.processes).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(options.processes).c_str(), 1);
      ::setenv("MASTER_ADDR", options.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      // As torchrun does for OpenMP: the host's cores are shared among the ranks (LOCAL_WORLD_SIZE, set
      // above). OpenBLAS (libtorch's fp32 BLAS here) would otherwise start a thread per core in every rank,
      // and N ranks x cores threads spin against each other (measured: 2 ranks on 2 cores went from 1.0x to
      // 1.6x one process with this).
      const std::string threads = std::to_string(default_threads_per_process());
      ::setenv("OMP_NUM_THREADS", threads.c_str(), 0);
      ::setenv("OPENBLAS_NUM_THREADS", threads.c_str(), 0);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(executable.c_str()));
      for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
      argv.push_back(nullptr);
      ::execv(executable.c_str(), argv.data());
      std::fprintf(stderr, "vitprobe launch: rank %d: cannot run %s: %s\n", rank, executable.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    ranks[pid] = rank;
  }
  // Like torchrun: SIGINT/SIGTERM/SIGHUP to launch go to every rank (no orphans when a scheduler stops it).
  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: waitpid returns EINTR
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal, &action, nullptr);
  int result = 0;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::now();
  // Sends `signal` to every running rank; the ones still running after the grace period get SIGKILL.
  const auto stop_ranks = [&](int signal) {
    for (const auto& [child, rank] : ranks) ::kill(child, signal);
    stopping = true;
    stop_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(options.grace_s * 1000));
  };
  while (!ranks.empty()) {
    if (received_signal != 0 && !stopping) {
      const int signal = received_signal;
      std::cerr << "vitprobe launch: got signal " << signal << " (" << strsignal(signal) << "); stopping " << ranks.size()
                << " rank(s)\n";
      result = 128 + signal;
      stop_ranks(signal);
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, stopping ? WNOHANG : 0);
    if (pid == 0) {  // stopping, nobody exited yet
      if (std::chrono::steady_clock::now() > stop_deadline) {
        for (const auto& [child, rank] : ranks) ::kill(child, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    const auto found = ranks.find(pid);
    if (found == ranks.end()) continue;
    const int rank = found->second;
    ranks.erase(found);
    const int code = exit_code_of(status);
    if (code != 0 && !stopping) {
      result = code;
      std::cerr << "vitprobe launch: rank " << rank << " " << describe_status(status);
      if (!ranks.empty()) std::cerr << "; stopping the other " << ranks.size() << " rank(s)";
      std::cerr << "\n";
      stop_ranks(SIGTERM);
    }
  }
  return result;
}

}  // namespace vitprobe
