#pragma once
// The batch loader: worker threads decode and transform items ahead of the consumer into a bounded set of
// batches, which the consumer receives in order. The epoch's order and every random choice depend only on
// (seed, epoch, item), so batches are identical for any number of workers.
#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace vitprobe {

/// Options of a BatchLoader.
struct LoaderOptions {
  int64_t batch_size = 64;
  int num_workers = 2;           // decoding threads (>= 1)
  int prefetch_batches = 4;      // batches prepared ahead of the consumer, at most
  bool shuffle = false;          // a new seeded permutation every epoch
  bool drop_last = false;        // keep only full global batches (batch_size x world_size items each)
  uint64_t seed = 0;             // epoch order and transform randomness
  bool bfloat16 = false;         // images as bf16 instead of float32
  bool pin_memory = false;       // batches in page-locked memory (CUDA runs: non-blocking copies to the GPU)
  bool skip_bad = false;         // skip items that fail to load (counted) instead of failing the run
  int rank = 0, world_size = 1;  // sharding: rank r gets positions r, r + world_size, ... of the epoch order
};

/// One batch: images (B, 3, S, S) contiguous float32 or bf16, labels and dataset indices (B) int64.
/// B is batch_size except for the last batch and for batches that lost skipped items.
struct Batch {
  at::Tensor images;
  at::Tensor labels;
  at::Tensor indices;
  int64_t batch_index = 0;  // position of the batch in the epoch (0, 1, ...)
};

/// An item that failed to load and was skipped (--skip-bad).
struct SkippedItem {
  int64_t index = 0;
  std::string name;
  std::string error;
};

/// The dataset positions a rank visits in `epoch`: the identity or a permutation seeded by (seed, epoch),
/// then every world_size-th position from `rank`. Across ranks every item appears exactly once.
std::vector<int64_t> epoch_order(int64_t n_items, const LoaderOptions& options, int64_t epoch);

/// drop_last: trims a rank's epoch order to the items of full global batches, floor(n / (batch x world)) x
/// batch, so every rank gets the same number of full batches and batch k of all ranks together is batch k
/// of one process with batch x world items (no-op without drop_last).
void trim_to_full_batches(std::vector<int64_t>& order, int64_t n_items, const LoaderOptions& options);

/// Seed of the transform of `index` in `epoch` (independent of the order and of the worker that loads it).
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

/// Loads a dataset in batches. Not copyable; one consumer thread calls start_epoch and next.
class BatchLoader {
 public:
  /// Throws BadInput for a batch size < 1, workers < 1, or a rank outside [0, world_size).
  BatchLoader(const Dataset& dataset, ImageTransform transform, LoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  /// Starts loading `epoch` (stopping any epoch in progress).
  void start_epoch(int64_t epoch);
  /// The next batch of the epoch in order, or nullopt at its end. Rethrows the error of an item that failed
  /// to load (naming its file) unless skip_bad is set; then the item is left out and recorded. No exception
  /// ever leaves a worker thread: one outside any item (a batch that cannot be allocated) is rethrown here.
  std::optional<Batch> next();

  /// Items this rank visits per epoch (before skipping, after drop_last).
  int64_t num_items() const { return static_cast<int64_t>(order_.size()); }
  /// Batches this rank gets per epoch.
  int64_t num_batches() const;
  /// Items skipped so far (all epochs), in order of position.
  const std::vector<SkippedItem>& skipped() const { return skipped_; }
  const Dataset& dataset() const { return dataset_; }
  const ImageTransform& transform() const { return transform_; }
  const LoaderOptions& options() const { return options_; }

 private:
  struct Slot;
  void stop();
  void work();
  void work_items();
  Slot& slot_for(int64_t batch);

  const Dataset& dataset_;
  const ImageTransform transform_;
  const LoaderOptions options_;

  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  std::vector<SkippedItem> skipped_;

  std::mutex mutex_;
  std::condition_variable work_ready_, batch_ready_;
  std::map<int64_t, std::unique_ptr<Slot>> slots_;
  int64_t next_position_ = 0;  // next item position a worker claims
  int64_t next_batch_ = 0;     // next batch the consumer takes
  bool stopping_ = false;
  bool started_ = false;
  std::exception_ptr failure_;  // an error outside any item (a batch that cannot be allocated), for next()
  std::vector<std::thread> workers_;
};

}  // namespace vitprobe
