#include "data/transforms.h"

#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/errors.h"

namespace vitprobe {
namespace {

// Python's round() on a non-negative double: halves go to the even neighbour (the default FP rounding mode).
int round_half_even(double value) { return static_cast<int>(std::nearbyint(value)); }

// torch.empty(1).uniform_(low, high).item() on a float32 tensor: a float32 value in [low, high).
float uniform_float32(Rng& rng, float low, float high) {
  const float value = static_cast<float>(rng.uniform(low, high));
  return value < high ? value : low;  // rounding to float32 may land on `high`; keep the interval half-open
}

}  // namespace

CropBox sample_resized_crop_box(int width, int height, const ResizedCropRanges& ranges, Rng& rng) {
  const double area = static_cast<double>(height) * width;
  // torch.log(torch.tensor(ratio)) is computed in float32.
  const float log_ratio_min = std::log(static_cast<float>(ranges.ratio_min));
  const float log_ratio_max = std::log(static_cast<float>(ranges.ratio_max));
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area =
        area * uniform_float32(rng, static_cast<float>(ranges.scale_min), static_cast<float>(ranges.scale_max));
    const double aspect_ratio = std::exp(uniform_float32(rng, log_ratio_min, log_ratio_max));
    const int w = round_half_even(std::sqrt(target_area * aspect_ratio));
    const int h = round_half_even(std::sqrt(target_area / aspect_ratio));
    if (0 < w && w <= width && 0 < h && h <= height) {
      CropBox box;
      box.height = h;
      box.width = w;
      box.top = static_cast<int>(rng.between(0, height - h));
      box.left = static_cast<int>(rng.between(0, width - w));
      return box;
    }
  }
  // Fallback: the central crop, as wide or as tall as the image, with the ratio clamped to the range.
  const double in_ratio = static_cast<double>(width) / height;
  CropBox box;
  if (in_ratio < ranges.ratio_min) {
    box.width = width;
    box.height = round_half_even(box.width / ranges.ratio_min);
  } else if (in_ratio > ranges.ratio_max) {
    box.height = height;
    box.width = round_half_even(box.height * ranges.ratio_max);
  } else {
    box.width = width;
    box.height = height;
  }
  box.top = (height - box.height) / 2;
  box.left = (width - box.width) / 2;
  return box;
}

CropBox sample_one_draw_crop_box(int width, int height, const ResizedCropRanges& ranges, Rng& rng) {
  const double area = static_cast<double>(height) * width;
  // util/crop.py: torch.log(torch.tensor(ratio)) and torch.exp(...) of a float32 tensor, both in float32.
  const float log_ratio_min = std::log(static_cast<float>(ranges.ratio_min));
  const float log_ratio_max = std::log(static_cast<float>(ranges.ratio_max));
  const double target_area =
      area * uniform_float32(rng, static_cast<float>(ranges.scale_min), static_cast<float>(ranges.scale_max));
  const double aspect_ratio = std::exp(static_cast<float>(uniform_float32(rng, log_ratio_min, log_ratio_max)));
  CropBox box;
  box.width = std::clamp(round_half_even(std::sqrt(target_area * aspect_ratio)), 1, width);
  box.height = std::clamp(round_half_even(std::sqrt(target_area / aspect_ratio)), 1, height);
  box.top = static_cast<int>(rng.between(0, height - box.height));
  box.left = static_cast<int>(rng.between(0, width - box.width));
  return box;
}

CropSampler parse_crop_sampler(const std::string& name) {
  if (name == "mae") return CropSampler::Mae;
  if (name == "torchvision") return CropSampler::Torchvision;
  throw BadInput("--crop-sampler '" + name + "': expected mae or torchvision");
}

ImageU8 resized_crop(const ImageU8& image, const CropBox& box, int size, Interpolation interpolation) {
  check_image(image, "resized crop");
  if (box.width <= 0 || box.height <= 0 || box.left < 0 || box.top < 0 || box.left + box.width > image.width ||
      box.top + box.height > image.height) {
    throw BadInput("resized crop: box (top " + std::to_string(box.top) + ", left " + std::to_string(box.left) + ", " +
                   std::to_string(box.width) + "x" + std::to_string(box.height) + ") is not inside the " +
                   std::to_string(image.width) + "x" + std::to_string(image.height) + " image");
  }
  ImageU8 cropped;
  cropped.width = box.width;
  cropped.height = box.height;
  cropped.pixels.resize(static_cast<size_t>(box.width) * box.height * 3);
  for (int y = 0; y < box.height; ++y) {
    std::memcpy(&cropped.pixels[static_cast<size_t>(y) * box.width * 3],
                &image.pixels[(static_cast<size_t>(box.top + y) * image.width + box.left) * 3],
                static_cast<size_t>(box.width) * 3);
  }
  return resize(cropped, size, size, interpolation);
}

ImageU8 horizontal_flip(const ImageU8& image) {
  check_image(image, "horizontal flip");
  ImageU8 out = image;
  for (int y = 0; y < image.height; ++y) {
    const uint8_t* in_row = &image.pixels[static_cast<size_t>(y) * image.width * 3];
    uint8_t* out_row = &out.pixels[static_cast<size_t>(y) * image.width * 3];
    for (int x = 0; x < image.width; ++x) std::memcpy(out_row + 3 * x, in_row + 3 * (image.width - 1 - x), 3);
  }
  return out;
}

std::map<std::string, std::string> preprocess_metadata(const PreprocessOptions& options) {
  // %.9g keeps every float32 exactly, so the values read back are the ones used.
  auto triplet = [](const std::array<float, 3>& values) {
    char text[64];
    std::snprintf(text, sizeof text, "%.9g,%.9g,%.9g", values[0], values[1], values[2]);
    return std::string(text);
  };
  return {{"mean", triplet(options.mean)},
          {"std", triplet(options.std)},
          {"resize", std::to_string(options.resize)},
          {"crop", std::to_string(options.crop)},
          {"interpolation", interpolation_name(options.interpolation)}};
}

TransformPreset parse_transform_preset(const std::string& name) {
  if (name == "eval") return TransformPreset::Eval;
  if (name == "train") return TransformPreset::Train;
  throw BadInput("transform preset '" + name + "': expected 'eval' or 'train'");
}

ImageTransform::ImageTransform(TransformOptions options) : options_(std::move(options)) {
  const auto& preprocess = options_.preprocess;
  if (preprocess.crop <= 0) throw BadInput("transform: crop " + std::to_string(preprocess.crop) + " must be positive");
  if (options_.preset == TransformPreset::Eval && preprocess.resize <= 0) {
    throw BadInput("transform: resize " + std::to_string(preprocess.resize) + " must be positive");
  }
  const auto& ranges = options_.ranges;
  if (!(0 < ranges.scale_min && ranges.scale_min <= ranges.scale_max) ||
      !(0 < ranges.ratio_min && ranges.ratio_min <= ranges.ratio_max)) {
    throw BadInput("transform: RandomResizedCrop needs 0 < scale_min <= scale_max and 0 < ratio_min <= ratio_max");
  }
  for (int c = 0; c < 3; ++c) {
    if (!(preprocess.std[c] != 0.0f)) {
      throw BadInput("transform: std " + std::to_string(preprocess.std[c]) + " must be non-zero");
    }
    // ToTensor divides by 255 in float32, then Normalize subtracts and divides, each rounded to float32.
    for (int value = 0; value < 256; ++value) {
      const float scaled = static_cast<float>(value) / 255.0f;
      lookup_[c][value] = (scaled - preprocess.mean[c]) / preprocess.std[c];
    }
  }
}

ImageU8 ImageTransform::geometric(const ImageU8& image, uint64_t sample_seed, TransformRecord* record) const {
  const auto& preprocess = options_.preprocess;
  if (options_.preset == TransformPreset::Eval) {
    return center_crop(resize_shorter_side(image, preprocess.resize, preprocess.interpolation), preprocess.crop);
  }
  check_image(image, "transform");
  Rng rng(sample_seed);
  TransformRecord choices;
  choices.box = options_.crop_sampler == CropSampler::Mae
                    ? sample_one_draw_crop_box(image.width, image.height, options_.ranges, rng)
                    : sample_resized_crop_box(image.width, image.height, options_.ranges, rng);
  // RandomHorizontalFlip: torch.rand(1) < p.
  choices.flipped = rng.uniform() < options_.flip_probability;
  if (record) *record = choices;
  ImageU8 out = resized_crop(image, choices.box, preprocess.crop, preprocess.interpolation);
  return choices.flipped ? horizontal_flip(out) : out;
}

void ImageTransform::normalize_into(const ImageU8& square, float* out) const {
  const int size = output_size();
  if (square.width != size || square.height != size) {
    throw BadInput("normalize: expected a " + std::to_string(size) + "x" + std::to_string(size) + " image, got " +
                   std::to_string(square.width) + "x" + std::to_string(square.height));
  }
  const size_t n_pixels = static_cast<size_t>(size) * size;
  for (int c = 0; c < 3; ++c) {
    const float* table = lookup_[c].data();
    float* plane = out + c * n_pixels;
    for (size_t i = 0; i < n_pixels; ++i) plane[i] = table[square.pixels[3 * i + c]];
  }
}

void ImageTransform::normalize_into(const ImageU8& square, c10::BFloat16* out) const {
  const int size = output_size();
  if (square.width != size || square.height != size) {
    throw BadInput("normalize: expected a " + std::to_string(size) + "x" + std::to_string(size) + " image, got " +
                   std::to_string(square.width) + "x" + std::to_string(square.height));
  }
  const size_t n_pixels = static_cast<size_t>(size) * size;
  for (int c = 0; c < 3; ++c) {
    std::array<c10::BFloat16, 256> table;
    for (int value = 0; value < 256; ++value) table[value] = c10::BFloat16(lookup_[c][value]);
    c10::BFloat16* plane = out + c * n_pixels;
    for (size_t i = 0; i < n_pixels; ++i) plane[i] = table[square.pixels[3 * i + c]];
  }
}

at::Tensor ImageTransform::operator()(const ImageU8& image, uint64_t sample_seed, TransformRecord* record) const {
  const ImageU8 square = geometric(image, sample_seed, record);
  at::Tensor out = at::empty({3, output_size(), output_size()}, at::TensorOptions().dtype(at::kFloat));
  normalize_into(square, out.data_ptr<float>());
  return out;
}

}  // namespace vitprobe
