#pragma once
// How the ranks of a data-parallel run talk to each other. The default object is one process alone (every
// call is a no-op); distributed/process_group.h connects the ranks of a distributed run through libtorch's c10d
// (TCPStore rendezvous, ProcessGroupGloo). Engine code takes a Communicator& and never needs to know which.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vitprobe {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const { return 0; }
  virtual int world_size() const { return 1; }
  /// Sums every tensor over ranks, in place. Tensors of one dtype travel together in one collective.
  virtual void all_reduce_sum(std::vector<at::Tensor>& tensors) { (void)tensors; }
  /// Returns when every rank has called it.
  virtual void barrier() {}
  /// Bytes this rank has sent through all_reduce_sum (the payload, not the transport's overhead).
  virtual uint64_t bytes_reduced() const { return 0; }
  /// Collective calls made so far.
  virtual uint64_t collectives() const { return 0; }

  bool is_main() const { return rank() == 0; }
  bool distributed() const { return world_size() > 1; }
  /// Sums one tensor over ranks, in place.
  void all_reduce_sum(at::Tensor& tensor) {
    std::vector<at::Tensor> one = {tensor};
    all_reduce_sum(one);
  }
};

/// The single-process communicator (a shared instance; stateless).
Communicator& single_process();

/// Rows of a (n_local, ...) tensor owned by this rank, placed at `positions` (int64, n_local, each in
/// [0, total)) of a zero (total, ...) tensor and summed over ranks: every rank gets the whole tensor in
/// position order, bit-identical to a single process holding all rows (adding zeros is exact).
at::Tensor all_gather_rows(Communicator& communicator, const at::Tensor& rows, const at::Tensor& positions, int64_t total);

/// sum over ranks of `input` with a gradient: the backward pass sums the incoming gradients over ranks too,
/// so every rank's loss reaches every rank's inputs (what SyncBatchNorm needs). Every rank must call it (and
/// run the backward) in the same order.
at::Tensor differentiable_all_reduce_sum(const at::Tensor& input, Communicator& communicator);

}  // namespace vitprobe
