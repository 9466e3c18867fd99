// The process groups (with rendezvous.cpp, which sees only c10d's Store): Gloo for CPU tensors, NCCL for CUDA
// tensors when libtorch has CUDA (libtorch's CMake config defines USE_C10D_GLOO and USE_C10D_NCCL).
#include "distributed/process_group.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(VITPROBE_TORCH_CUDA) && defined(USE_C10D_NCCL)
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define VITPROBE_NCCL 1
#endif

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>

#include "common/errors.h"
#include "distributed/rendezvous.h"

namespace vitprobe {

namespace {

// Gloo's full mesh: each round is given this limit (or the whole --dist-timeout when that is shorter). Gloo
// waits up to 5 times the limit for a pair it listens on (tcp/pair.h: "a longer timeout when waiting for
// initial connect"): with PyTorch's 30 min default, a lost connection held a rank for 2.5 hours.
constexpr int64_t kConnectRoundMs = 15000;
constexpr int kGlooConnectFactor = 5;
constexpr int kConnectRounds = 3;

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (!value || !*value) return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0') throw BadInput(std::string("environment variable ") + name + "='" + value + "' is not an integer");
  return static_cast<int>(parsed);
}

std::string env_text(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", seconds);
  return text;
}

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const DistOptions& options, const std::string& host, int port)
      : rank_(options.rank), world_size_(options.world_size),
        timeout_(std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000))) {
    const std::string where = host + ":" + std::to_string(port);
    try {
      c10d::TCPStoreOptions store_options;
      store_options.port = static_cast<uint16_t>(port);
      store_options.isServer = rank_ == 0;
      store_options.numWorkers = static_cast<size_t>(world_size_);
      store_options.waitWorkers = true;
      store_options.timeout = timeout_;
      store_ = c10::make_intrusive<c10d::TCPStore>(host, store_options);
      // Everyone has started (waited for with the whole timeout); then Gloo's full mesh, which on loopback takes
      // milliseconds, is given a short limit and tried again on fresh keys by all ranks together. A mesh
      // connection that never completes (seen in a clean-clone test run: two of three ranks stuck in Gloo's
      // Pair::waitUntilConnected) costs a short round instead of 5 times the whole timeout.
      wait_for_all_ranks(*store_, world_size_, timeout_);
      const auto connect_timeout = std::min(timeout_, std::chrono::milliseconds(kConnectRoundMs));
      const bool loopback = host == "127.0.0.1" || host == "localhost";
      // As PyTorch: GLOO_SOCKET_IFNAME names the interface; else the one this host's name resolves to.
      const std::string interface = env_text("GLOO_SOCKET_IFNAME");
      // A rank may report a round later than the others by Gloo's wait per peer (its pairs connect one after
      // the other) and the first barrier's limit.
      const auto outcome_wait = timeout_ + (kGlooConnectFactor * (world_size_ - 1) + 1) * connect_timeout;
      attempt_together(*store_, rank_, world_size_, kConnectRounds, outcome_wait, [&](int round) {
        // A group that connected but failed its first barrier (so failed on another rank) is abandoned: its
        // destructor would wait for that barrier. It keeps a listening socket and three threads until the
        // process ends. (A group whose constructor threw is gone already.)
        if (group_) static_cast<void>(group_.release());
        if (round > 0) {
          std::fprintf(stderr, "vitprobe: distributed: rank %d: connecting again (round %d of %d): the last round "
                       "failed on a rank\n", rank_, round + 1, kConnectRounds);
        }
        auto group_options = c10d::ProcessGroupGloo::Options::create(connect_timeout);
        group_options->devices.push_back(
            !interface.empty() ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
            : loopback         ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                               : c10d::ProcessGroupGloo::createDefaultDevice());
        auto round_store = c10::make_intrusive<c10d::PrefixStore>("gloo-" + std::to_string(round) + "/", store_);
        group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(round_store, rank_, world_size_, group_options);
        group_->barrier()->wait(connect_timeout);  // throws when a rank did not come
      });
      group_->setTimeout(timeout_);  // collectives get the whole timeout
#ifdef VITPROBE_NCCL
      // CUDA tensors travel through NCCL (GPU to GPU), on keys of their own in the same store.
      if (at::Device(options.device).is_cuda()) {
        auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
        nccl_options->timeout = timeout_;
        nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl/", store_),
                                                             rank_, world_size_, nccl_options);
      }
#endif
      // Rank 0 hosts the store the others still read the rounds' outcomes from: nobody leaves the rendezvous
      // (e.g. a job that then needs no collective) before every rank has read them.
      auto joined = group_->barrier();
      joined->wait(timeout_);
    } catch (const std::exception& error) {
      throw IoError("distributed: rank " + std::to_string(rank_) + " of " + std::to_string(world_size_) +
                    " could not join the run at " + where + " (--dist-timeout " + seconds_text(options.timeout_s) +
                    "): " + first_line(error));
    }
  }

  ~GlooCommunicator() override {
#ifdef VITPROBE_NCCL
    // As destroy_process_group: NCCL's communicators end before the process does (no exit-time warning).
    if (nccl_) {
      try {
        nccl_->shutdown();
      } catch (const std::exception&) {
      }
    }
#endif
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  uint64_t bytes_reduced() const override { return bytes_; }
  uint64_t collectives() const override { return calls_; }

  void all_reduce_sum(std::vector<at::Tensor>& tensors) override {
    // One flat buffer per dtype and device: a collective takes one tensor per device, not a list of parameters.
    // CUDA tensors stay on their GPU when NCCL is there; everything else goes through Gloo on the CPU.
    std::map<std::pair<at::ScalarType, bool>, std::vector<size_t>> by_dtype;
    for (size_t i = 0; i < tensors.size(); ++i) {
      by_dtype[{tensors[i].scalar_type(), has_nccl() && tensors[i].is_cuda()}].push_back(i);
    }
    for (const auto& [key, members] : by_dtype) {
      const bool on_gpu = key.second;
      std::vector<at::Tensor> flat_parts;
      for (auto i : members) {
        flat_parts.push_back(on_gpu ? tensors[i].detach().reshape({-1}) : tensors[i].detach().to(at::kCPU).reshape({-1}));
      }
      std::vector<at::Tensor> buffer = {flat_parts.size() == 1 ? flat_parts[0].clone() : at::cat(flat_parts)};
#ifdef VITPROBE_NCCL
      run("all-reduce", [&] { return on_gpu ? nccl_->allreduce(buffer) : group_->allreduce(buffer); });
#else
      run("all-reduce", [&] { return group_->allreduce(buffer); });
#endif
      bytes_ += static_cast<uint64_t>(buffer[0].nbytes());
      int64_t offset = 0;
      for (auto i : members) {
        const auto count = tensors[i].numel();
        tensors[i].detach().copy_(buffer[0].slice(0, offset, offset + count).view(tensors[i].sizes()));
        offset += count;
      }
    }
  }

  void barrier() override {
    run("barrier", [&] { return group_->barrier(); });
  }

 private:
  template <typename Start>
  void run(const char* what, Start start) {
    ++calls_;
    try {
      auto work = start();
      if (!work->wait(timeout_)) throw std::runtime_error("timed out");
    } catch (const std::exception& error) {
      throw IoError("distributed: rank " + std::to_string(rank_) + ": " + what + " failed (a peer process died, " +
                    "was killed or did not answer within " + seconds_text(timeout_.count() / 1000.0) + "): " +
                    first_line(error));
    }
  }

  int rank_, world_size_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
#ifdef VITPROBE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;  // null on CPU runs
  bool has_nccl() const { return static_cast<bool>(nccl_); }
#else
  bool has_nccl() const { return false; }  // a libtorch without CUDA: every collective goes through Gloo
#endif
  uint64_t bytes_ = 0, calls_ = 0;
};

}  // namespace

DistOptions resolve_dist_options(DistOptions options) {
  if (options.world_size < 0) options.world_size = env_int("WORLD_SIZE", 1);
  if (options.rank < 0) options.rank = env_int("RANK", 0);
  if (options.master.empty() && options.world_size > 1) {
    const auto address = env_text("MASTER_ADDR"), port = env_text("MASTER_PORT");
    if (!address.empty() || !port.empty()) options.master = (address.empty() ? "127.0.0.1" : address) + ":" + (port.empty() ? "29500" : port);
  }
  if (options.world_size < 1) throw BadInput("--world-size " + std::to_string(options.world_size) + " must be >= 1");
  if (options.rank < 0 || options.rank >= options.world_size) {
    throw BadInput("--rank " + std::to_string(options.rank) + " is not in [0, world size " +
                   std::to_string(options.world_size) + ")");
  }
  if (!(options.timeout_s > 0)) throw BadInput("--dist-timeout must be > 0 seconds");
  if (options.world_size > 1 && options.master.empty()) {
    throw BadInput("a distributed run (world size " + std::to_string(options.world_size) +
                   ") needs --master ADDR:PORT or MASTER_ADDR and MASTER_PORT");
  }
  return options;
}

DistOptions rank_dist_options(const DistOptions& options, std::string& device) {
  DistOptions resolved = resolve_dist_options(options);
  if (resolved.world_size > 1 && device.rfind("cuda:", 0) == 0) {
    throw BadInput("--device " + device + " in a distributed run would put every rank on one GPU: pass --device "
                   "cuda, and each rank takes cuda:LOCAL_RANK");
  }
  if (device == "cuda" && resolved.world_size > 1) {
    device = "cuda:" + std::to_string(env_int("LOCAL_RANK", resolved.rank));
  }
  resolved.device = device;
#ifdef VITPROBE_NCCL
  const at::Device chosen(device);
  if (chosen.is_cuda()) {
    const int count = static_cast<int>(c10::cuda::device_count());
    const int index = chosen.has_index() ? chosen.index() : 0;
    if (index >= count) {
      throw BadInput("rank " + std::to_string(resolved.rank) + ": " + device + " but only " + std::to_string(count) +
                     " CUDA device(s) visible (LOCAL_RANK picks the GPU of each rank)");
    }
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
  }
#endif
  return resolved;
}

std::unique_ptr<Communicator> connect(const DistOptions& options) {
  if (options.world_size <= 1) return std::make_unique<Communicator>();
  // Gloo writes to sockets without MSG_NOSIGNAL: a peer that died would kill this rank with SIGPIPE before it
  // can report the failure (CPython ignores SIGPIPE for PyTorch; a C++ program must do it itself).
  std::signal(SIGPIPE, SIG_IGN);
  const auto colon = options.master.rfind(':');
  if (colon == std::string::npos || colon == 0) throw BadInput("--master '" + options.master + "': expected ADDR:PORT");
  const std::string host = options.master.substr(0, colon), port_text = options.master.substr(colon + 1);
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port < 1 || port > 65535) {
    throw BadInput("--master '" + options.master + "': the port must be in 1..65535");
  }
  return std::make_unique<GlooCommunicator>(options, host, static_cast<int>(port));
}

int default_threads_per_process() {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int local = std::max(1, env_int("LOCAL_WORLD_SIZE", 1));
  return std::max(1, cores / local);
}

}  // namespace vitprobe
