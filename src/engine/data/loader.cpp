#include "data/loader.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/tensor.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <new>
#include <numeric>

#include "common/errors.h"
#include "data/random.h"

namespace vitprobe {
namespace {

// The error of a failed item, with the item's name in front when the message does not already carry it
// (decoders name the file themselves; a transform error would not).
std::exception_ptr named_error(const std::string& name) {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return std::make_exception_ptr(BadInput(name + ": out of memory while loading it (image too large?)"));
  } catch (const BadInput& error) {
    const std::string what = error.what();
    return std::make_exception_ptr(what.find(name) == std::string::npos ? BadInput(name + ": " + what) : error);
  } catch (const IoError& error) {
    const std::string what = error.what();
    return std::make_exception_ptr(what.find(name) == std::string::npos ? IoError(name + ": " + what) : error);
  } catch (const std::exception& error) {
    return std::make_exception_ptr(std::runtime_error(name + ": " + error.what()));
  } catch (...) {
    return std::make_exception_ptr(std::runtime_error(name + ": unknown error"));
  }
}

std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

// A batch being filled: rows are written by whichever worker loads them, then handed over complete.
struct BatchLoader::Slot {
  at::Tensor images;
  std::vector<int64_t> labels, indices;
  std::vector<std::exception_ptr> errors;  // per row; null when the row loaded
  int64_t remaining = 0;
};

std::vector<int64_t> epoch_order(int64_t n_items, const LoaderOptions& options, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n_items));
  std::iota(order.begin(), order.end(), 0);
  if (options.shuffle) {
    Rng rng(derive_seed(options.seed, static_cast<uint64_t>(RandomStream::EpochOrder), static_cast<uint64_t>(epoch)));
    for (int64_t i = n_items - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  }
  if (options.world_size <= 1) return order;
  std::vector<int64_t> shard;
  for (int64_t position = options.rank; position < n_items; position += options.world_size) {
    shard.push_back(order[static_cast<size_t>(position)]);
  }
  return shard;
}

void trim_to_full_batches(std::vector<int64_t>& order, int64_t n_items, const LoaderOptions& options) {
  if (!options.drop_last) return;
  const int64_t global = options.batch_size * std::max(1, options.world_size);
  order.resize(static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(order.size()), n_items / global * options.batch_size)));
}

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  const auto stream = static_cast<uint64_t>(RandomStream::Transform);
  return derive_seed(derive_seed(seed, stream, static_cast<uint64_t>(epoch)), stream, static_cast<uint64_t>(index));
}

BatchLoader::BatchLoader(const Dataset& dataset, ImageTransform transform, LoaderOptions options)
    : dataset_(dataset), transform_(std::move(transform)), options_(options) {
  if (options_.batch_size < 1) {
    throw BadInput("loader: batch size " + std::to_string(options_.batch_size) + " must be >= 1");
  }
  if (options_.num_workers < 1) {
    throw BadInput("loader: workers " + std::to_string(options_.num_workers) + " must be >= 1");
  }
  if (options_.prefetch_batches < 1) throw BadInput("loader: prefetch must be >= 1 batch");
  if (options_.world_size < 1 || options_.rank < 0 || options_.rank >= options_.world_size) {
    throw BadInput("loader: rank " + std::to_string(options_.rank) + " is not in [0, world size " +
                   std::to_string(options_.world_size) + ")");
  }
}

BatchLoader::~BatchLoader() { stop(); }

int64_t BatchLoader::num_batches() const {
  return (num_items() + options_.batch_size - 1) / options_.batch_size;
}

void BatchLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& worker : workers_) worker.join();
  workers_.clear();
  slots_.clear();
}

void BatchLoader::start_epoch(int64_t epoch) {
  stop();
  epoch_ = epoch;
  order_ = epoch_order(dataset_.size(), options_, epoch);
  trim_to_full_batches(order_, dataset_.size(), options_);
  next_position_ = 0;
  next_batch_ = 0;
  stopping_ = false;
  failure_ = nullptr;
  started_ = true;
  const int n_workers = static_cast<int>(std::min<int64_t>(options_.num_workers, std::max<int64_t>(1, num_items())));
  for (int worker = 0; worker < n_workers; ++worker) workers_.emplace_back([this] { work(); });
}

BatchLoader::Slot& BatchLoader::slot_for(int64_t batch) {
  auto& slot = slots_[batch];
  if (!slot) {
    const int64_t first = batch * options_.batch_size;
    const int64_t rows = std::min(options_.batch_size, num_items() - first);
    const int size = transform_.output_size();
    auto fresh = std::make_unique<Slot>();
    try {
      fresh->images = at::empty({rows, 3, size, size},
                                at::TensorOptions()
                                    .dtype(options_.bfloat16 ? at::kBFloat16 : at::kFloat)
                                    .pinned_memory(options_.pin_memory));
    } catch (const std::exception&) {  // std::bad_alloc, or c10::Error from libtorch's allocator
      slots_.erase(batch);
      const double mib = static_cast<double>(rows) * 3 * size * size * (options_.bfloat16 ? 2 : 4) / (1 << 20);
      throw BadInput("loader: cannot allocate a batch of " + std::to_string(rows) + "x3x" + std::to_string(size) + "x" +
                     std::to_string(size) + (options_.bfloat16 ? " bf16" : " float32") + " (" +
                     std::to_string(static_cast<int64_t>(mib)) + " MiB): out of memory (lower --batch or the crop size)");
    }
    slot = std::move(fresh);
    slot->labels.assign(static_cast<size_t>(rows), 0);
    slot->indices.assign(static_cast<size_t>(rows), 0);
    slot->errors.assign(static_cast<size_t>(rows), nullptr);
    slot->remaining = rows;
  }
  return *slot;
}

void BatchLoader::work() {
  // An exception leaving a thread ends the process (std::terminate): whatever escapes an item's own
  // handling is kept for next() to rethrow, and the epoch stops.
  try {
    work_items();
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!failure_) failure_ = std::current_exception();
      stopping_ = true;
    }
    work_ready_.notify_all();
    batch_ready_.notify_all();
  }
}

void BatchLoader::work_items() {
  const int64_t n_items = num_items();
  const int size = transform_.output_size();
  const size_t row_values = 3 * static_cast<size_t>(size) * size;
  for (;;) {
    int64_t position = 0;
    Slot* slot = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Stay at most prefetch_batches ahead of the consumer, which bounds memory.
      work_ready_.wait(lock, [&] {
        return stopping_ || next_position_ >= n_items ||
               next_position_ / options_.batch_size < next_batch_ + options_.prefetch_batches;
      });
      if (stopping_ || next_position_ >= n_items) return;
      position = next_position_++;
      slot = &slot_for(position / options_.batch_size);
    }
    const size_t row = static_cast<size_t>(position % options_.batch_size);
    const int64_t index = order_[static_cast<size_t>(position)];
    slot->indices[row] = index;
    try {
      slot->labels[row] = dataset_.label(index);
      const ImageU8 square = transform_.geometric(dataset_.load(index), sample_seed(options_.seed, epoch_, index));
      if (options_.bfloat16) {
        transform_.normalize_into(square, slot->images.data_ptr<c10::BFloat16>() + row * row_values);
      } else {
        transform_.normalize_into(square, slot->images.data_ptr<float>() + row * row_values);
      }
    } catch (...) {
      slot->errors[row] = named_error(dataset_.item_name(index));
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--slot->remaining == 0) batch_ready_.notify_all();
    }
  }
}

std::optional<Batch> BatchLoader::next() {
  if (!started_) throw BadInput("loader: next() called before start_epoch()");
  if (next_batch_ >= num_batches()) return std::nullopt;
  std::unique_ptr<Slot> slot;
  const int64_t batch_index = next_batch_;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    batch_ready_.wait(lock, [&] {
      const auto found = slots_.find(batch_index);
      return failure_ || (found != slots_.end() && found->second->remaining == 0);
    });
    if (failure_) {
      const std::exception_ptr failure = failure_;
      lock.unlock();
      stop();
      next_batch_ = num_batches();
      std::rethrow_exception(failure);
    }
    slot = std::move(slots_[batch_index]);
    slots_.erase(batch_index);
    ++next_batch_;
  }
  work_ready_.notify_all();

  std::vector<int64_t> kept_rows;
  for (size_t row = 0; row < slot->errors.size(); ++row) {
    if (!slot->errors[row]) {
      kept_rows.push_back(static_cast<int64_t>(row));
      continue;
    }
    if (!options_.skip_bad) {
      const std::exception_ptr error = slot->errors[row];
      stop();
      next_batch_ = num_batches();
      std::rethrow_exception(error);
    }
    skipped_.push_back({slot->indices[row], dataset_.item_name(slot->indices[row]), message_of(slot->errors[row])});
  }

  Batch batch;
  batch.batch_index = batch_index;
  batch.images = slot->images;
  batch.labels = at::tensor(slot->labels, at::TensorOptions().dtype(at::kLong));
  batch.indices = at::tensor(slot->indices, at::TensorOptions().dtype(at::kLong));
  if (kept_rows.size() != slot->errors.size()) {
    const at::Tensor keep = at::tensor(kept_rows, at::TensorOptions().dtype(at::kLong));
    batch.images = batch.images.index_select(0, keep);
    batch.labels = batch.labels.index_select(0, keep);
    batch.indices = batch.indices.index_select(0, keep);
  }
  if (next_batch_ >= num_batches()) stop();
  return batch;
}

}  // namespace vitprobe
