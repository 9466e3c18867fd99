#pragma once
// A Communicator whose ranks are threads of the test process: all_reduce_sum sums the ranks' tensors in rank
// order under a mutex, barrier waits for all. Lets unit tests run N ranks of engine code side by side and
// compare with one rank, without sockets.
#include <ATen/ATen.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "distributed/communicator.h"

namespace vitprobe::dist_test {

class ThreadGroup {
 public:
  explicit ThreadGroup(int world_size) : world_size_(world_size), slots_(static_cast<size_t>(world_size)) {}

  // Every rank passes its tensor; every rank gets the sum (computed once, in rank order).
  at::Tensor reduce(int rank, const at::Tensor& tensor) {
    std::unique_lock<std::mutex> lock(mutex_);
    slots_[static_cast<size_t>(rank)] = tensor.detach().clone();
    const int64_t generation = generation_;
    if (++arrived_ == world_size_) {
      auto sum = slots_[0].clone();
      for (size_t i = 1; i < slots_.size(); ++i) sum += slots_[i];
      result_ = sum;
      arrived_ = 0;
      ++generation_;
      changed_.notify_all();
      return sum.clone();
    }
    changed_.wait(lock, [&] { return generation_ != generation; });
    return result_.clone();
  }
  int world_size() const { return world_size_; }

 private:
  int world_size_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<at::Tensor> slots_;
  at::Tensor result_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(ThreadGroup& group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return group_.world_size(); }
  void all_reduce_sum(std::vector<at::Tensor>& tensors) override {
    for (auto& tensor : tensors) {
      const auto sum = group_.reduce(rank_, tensor);
      tensor.detach().copy_(sum);
      ++calls_;
    }
  }
  void barrier() override { group_.reduce(rank_, at::zeros({1})); }
  uint64_t collectives() const override { return calls_; }

 private:
  ThreadGroup& group_;
  int rank_;
  uint64_t calls_ = 0;
};

// Runs body(communicator) on world_size threads and rethrows the first failure.
inline void run_ranks(int world_size, const std::function<void(Communicator&)>& body) {
  ThreadGroup group(world_size);
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world_size));
  for (int rank = 0; rank < world_size; ++rank) {
    threads.emplace_back([&, rank] {
      ThreadCommunicator communicator(group, rank);
      try {
        body(communicator);
      } catch (...) {
        errors[static_cast<size_t>(rank)] = std::current_exception();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

}  // namespace vitprobe::dist_test
