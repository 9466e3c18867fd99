#pragma once
// DINO's multi-crop augmentation (main_dino.py DataAugmentationDINO) and a loader of multi-crop batches.
// Per image: 2 global crops (RandomResizedCrop scale (0.4, 1)) and several local crops (scale (0.05, 0.4)),
// each flipped and colour-jittered; Gaussian blur with probability 1.0 / 0.1 / 0.5 (global 1 / global 2 /
// local) and solarization 0.2 on global 2. Every random choice comes from (seed, epoch, item, crop), so
// batches do not depend on the thread count.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace vitprobe {

/// What DataAugmentationDINO does, sized for any input resolution.
struct MultiCropOptions {
  int global_size = 224;
  int local_size = 96;
  int num_local_crops = 8;
  ResizedCropRanges global_ranges{0.4, 1.0};
  ResizedCropRanges local_ranges{0.05, 0.4};
  PreprocessOptions normalize;      // mean, std and interpolation (resize/crop unused)
  double jitter_probability = 0.8;  // ColorJitter(brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) p=0.8
  double brightness = 0.4, contrast = 0.4, saturation = 0.2;
  double grayscale_probability = 0.2;
  double blur_probability_global1 = 1.0, blur_probability_global2 = 0.1, blur_probability_local = 0.5;
  /// GaussianBlur sigma in [0.1, 2.0] px at 224 px, scaled with the crop size (the same relative blur).
  double blur_sigma_min = 0.1, blur_sigma_max = 2.0;
  double solarize_probability_global2 = 0.2;
};

/// The photometric and geometric pipeline of one crop kind; immutable, shareable between threads.
class MultiCropAugmentation {
 public:
  explicit MultiCropAugmentation(MultiCropOptions options);
  const MultiCropOptions& options() const { return options_; }
  /// Number of crops per image (2 + local).
  int num_crops() const { return 2 + options_.num_local_crops; }
  /// Side of crop `crop` (globals first).
  int crop_size(int crop) const { return crop < 2 ? options_.global_size : options_.local_size; }
  /// Crop `crop` of `image` as an 8-bit image, drawn with `seed`.
  ImageU8 crop(const ImageU8& image, int crop, uint64_t seed) const;
  /// ToTensor + Normalize of a crop into 3 x size x size floats at `out`.
  void normalize_into(const ImageU8& crop_image, int crop, float* out) const;

 private:
  MultiCropOptions options_;
  ImageTransform global_normalize_, local_normalize_;
};

/// Batches of multi-crop views over a dataset: a seeded permutation per epoch (the BatchLoader order),
/// batches of `batch_size` (the last short batch dropped, as DINO's drop_last=True).
class MultiCropLoader {
 public:
  MultiCropLoader(const Dataset& dataset, MultiCropOptions options, int64_t batch_size, uint64_t seed);
  int64_t num_batches() const;
  int64_t batch_size() const { return batch_size_; }
  /// Views of batch `batch_index` of `epoch`: num_crops() tensors (B, 3, S, S), globals first; items are
  /// decoded and augmented in parallel (at::parallel_for).
  std::vector<at::Tensor> batch(int64_t epoch, int64_t batch_index) const;
  const MultiCropAugmentation& augmentation() const { return augmentation_; }

 private:
  const Dataset& dataset_;
  MultiCropAugmentation augmentation_;
  int64_t batch_size_;
  uint64_t seed_;
};

}  // namespace vitprobe
