#pragma once
// The image transforms of the training and evaluation pipelines, with torchvision 0.14 semantics on PIL
// images: RandomResizedCrop (its box sampler reproduced step by step), RandomHorizontalFlip, and the presets
//   eval  = Resize(resize, short side) + CenterCrop(crop) + ToTensor + Normalize
//   train = RandomResizedCrop(crop, scale, ratio) + RandomHorizontalFlip(0.5) + ToTensor + Normalize
// (the MAE / beyond_cls linear-probe recipe). Randomness comes from a per-sample seed, never shared state.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "data/random.h"
#include "image/image.h"
#include "image/transforms.h"

namespace vitprobe {

/// A crop rectangle in pixels, in torchvision's (i, j, h, w) order: top row, left column, height, width.
struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
};

/// The ranges of RandomResizedCrop: area fraction and aspect ratio (width / height).
struct ResizedCropRanges {
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
};

/// torchvision 0.14 RandomResizedCrop.get_params: up to 10 tries of an area fraction uniform in [scale] and
/// a log-uniform aspect ratio, w and h rounded half to even, accepted when both fit; otherwise the central
/// crop clamped to the ratio range. Consumes random numbers from `rng` in the same order as torchvision.
CropBox sample_resized_crop_box(int width, int height, const ResizedCropRanges& ranges, Rng& rng);

/// MAE util/crop.py RandomResizedCrop.get_params (BYOL's TF sampler, used by MAE and beyond_cls linear probing):
/// one draw of an area fraction uniform in [scale] and a log-uniform aspect ratio (exp taken in float32), w and h
/// rounded half to even and clamped to the image, the corner uniform over the positions that fit; no retries and
/// no central fallback.
CropBox sample_one_draw_crop_box(int width, int height, const ResizedCropRanges& ranges, Rng& rng);

/// Which RandomResizedCrop box sampler the train preset uses.
enum class CropSampler {
  Mae,          // sample_one_draw_crop_box (MAE / beyond_cls linear probing)
  Torchvision,  // sample_resized_crop_box (torchvision's ten tries)
};

/// Parses "mae" or "torchvision"; throws BadInput naming the value otherwise.
CropSampler parse_crop_sampler(const std::string& name);

/// Crops `box` (which must lie inside the image) and resizes it to size x size, like F.resized_crop on a PIL image.
ImageU8 resized_crop(const ImageU8& image, const CropBox& box, int size, Interpolation interpolation);

/// Mirrors the image left to right (F.hflip).
ImageU8 horizontal_flip(const ImageU8& image);

/// The checkpoint metadata entries (mean, std, resize, crop, interpolation) that PreprocessSettings::resolve
/// reads back into `options`; commands that save checkpoints write them so the eval preset travels with them.
std::map<std::string, std::string> preprocess_metadata(const PreprocessOptions& options);

/// The two pipelines.
enum class TransformPreset { Eval, Train };

/// Parses "eval" or "train"; throws BadInput naming the value otherwise.
TransformPreset parse_transform_preset(const std::string& name);

/// Options of a pipeline; resize is used by eval only, crop is the output side of both.
struct TransformOptions {
  TransformPreset preset = TransformPreset::Eval;
  PreprocessOptions preprocess;
  ResizedCropRanges ranges;
  CropSampler crop_sampler = CropSampler::Torchvision;  // train preset only
  double flip_probability = 0.5;
};

/// The random choices made for one sample (train preset), for tests and logs.
struct TransformRecord {
  CropBox box;
  bool flipped = false;
};

/// One pipeline, immutable and safe to share between threads.
class ImageTransform {
 public:
  /// Throws BadInput for sizes <= 0, std values of 0, or empty ranges.
  explicit ImageTransform(TransformOptions options);

  /// Output side (the crop size).
  int output_size() const { return options_.preprocess.crop; }
  const TransformOptions& options() const { return options_; }

  /// The geometric part (resize/crop/flip) giving an output_size() square; `sample_seed` drives the random
  /// choices of the train preset, which are written to `record` when given.
  ImageU8 geometric(const ImageU8& image, uint64_t sample_seed, TransformRecord* record = nullptr) const;

  /// ToTensor + Normalize of an output_size() square into 3 x size x size floats (CHW) at `out`, rounding
  /// exactly as torchvision's float32 operations do.
  void normalize_into(const ImageU8& square, float* out) const;
  /// The same into bfloat16 (each value rounded to nearest even from the float32 result).
  void normalize_into(const ImageU8& square, c10::BFloat16* out) const;

  /// geometric + normalize as a float32 (3, size, size) tensor.
  at::Tensor operator()(const ImageU8& image, uint64_t sample_seed, TransformRecord* record = nullptr) const;

 private:
  TransformOptions options_;
  // (value / 255 - mean) / std for every byte value and channel.
  std::array<std::array<float, 256>, 3> lookup_{};
};

}  // namespace vitprobe
