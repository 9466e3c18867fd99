#pragma once
// The batches `vitprobe pretrain` trains on: MAE one RandomResizedCrop + flip view, DINO the multi-crop views;
// and the normalisation measured on the training images when none is given.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "jobs/pretrain_options.h"
#include "pretrain/multi_crop.h"

namespace vitprobe {

/// The batches of one objective, epoch by epoch.
class ViewSource {
 public:
  virtual ~ViewSource() = default;
  virtual int64_t num_batches() const = 0;
  virtual void start_epoch(int64_t epoch) = 0;
  virtual std::vector<at::Tensor> next() = 0;
};

/// One augmented view per image (MAE), from a BatchLoader; drops the last partial batch.
class SingleViewSource final : public ViewSource {
 public:
  SingleViewSource(const Dataset& dataset, ImageTransform transform, LoaderOptions options)
      : loader_(dataset, std::move(transform), options),
        num_batches_(dataset.size() / options.batch_size) {}  // drop_last
  int64_t num_batches() const override { return num_batches_; }
  void start_epoch(int64_t epoch) override { loader_.start_epoch(epoch); }
  std::vector<at::Tensor> next() override {
    auto batch = loader_.next();
    if (!batch) throw std::logic_error("pretrain: loader ended before its last batch");
    return {batch->images};
  }

 private:
  BatchLoader loader_;
  int64_t num_batches_;
};

/// The global and local crops of DINO (pretrain/multi_crop.h).
class MultiCropSource final : public ViewSource {
 public:
  MultiCropSource(const Dataset& dataset, MultiCropOptions options, int64_t batch_size, uint64_t seed)
      : loader_(dataset, std::move(options), batch_size, seed) {}
  int64_t num_batches() const override { return loader_.num_batches(); }
  void start_epoch(int64_t epoch) override {
    epoch_ = epoch;
    next_batch_ = 0;
  }
  std::vector<at::Tensor> next() override { return loader_.batch(epoch_, next_batch_++); }

 private:
  MultiCropLoader loader_;
  int64_t epoch_ = 0, next_batch_ = 0;
};

/// Per-channel mean and std of the pixels (0..1) of up to 10,000 training images (a class-balanced, seeded subset).
std::pair<std::array<float, 3>, std::array<float, 3>> measure_mean_std(const Dataset& dataset, uint64_t seed);

/// The side of DINO's local crops: --local-crop-size, else DINO's 96 px for 224 px inputs scaled to the
/// input size, on whole patches.
int local_crop_size(const PretrainOptions& options, const VitConfig& config);

}  // namespace vitprobe
