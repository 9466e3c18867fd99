#pragma once
// Joining a distributed run: where the rank, world size and rendezvous address come from (the variables
// torchrun sets, or flags), and the c10d connection itself (TCPStore on the master, ProcessGroupGloo).
#include <memory>
#include <string>

#include "distributed/communicator.h"

namespace vitprobe {

/// A rank's place in a run. Unset fields (rank/world_size < 0, empty master) come from the environment:
/// RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as torchrun and `vitprobe launch` set them.
struct DistOptions {
  int rank = -1;
  int world_size = -1;
  std::string master;        // "ADDR:PORT"
  double timeout_s = 1800;   // rendezvous and every collective (PyTorch's default); it also bounds how long a rank
                             // waits for slower peers; a dead peer fails at once (closed socket)
  std::string device = "cpu";  // this rank's device: a CUDA device adds an NCCL group for CUDA tensors
};

/// resolve_dist_options, then this rank's device: in a distributed run "cuda" becomes "cuda:LOCAL_RANK" (set by
/// `vitprobe launch` and torchrun; else the rank), so each rank of a node takes its own GPU. Updates `device`
/// (the job's --device) to the same and selects it as the current CUDA device.
DistOptions rank_dist_options(const DistOptions& options, std::string& device);

/// Fills unset fields from the environment; a run with neither flags nor variables is one process (rank 0
/// of 1). Throws BadInput for a rank outside [0, world size), a bad port or a missing master address.
DistOptions resolve_dist_options(DistOptions options);

/// Connects to the other ranks (world size > 1: blocks until all have joined, at most timeout_s) or returns
/// the single-process communicator's equivalent. Throws IoError naming the master when the rendezvous fails.
std::unique_ptr<Communicator> connect(const DistOptions& options);

/// Intra-op threads for a process when none were asked for: the cores divided among the processes of this
/// host (LOCAL_WORLD_SIZE, set by torchrun and `vitprobe launch`), at least 1.
int default_threads_per_process();

}  // namespace vitprobe
