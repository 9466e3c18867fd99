#include "pretrain/multi_crop.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "common/errors.h"
#include "data/loader.h"
#include "data/random.h"
#include "image/resize.h"

namespace vitprobe {
namespace {

uint8_t clamp_byte(double value) { return static_cast<uint8_t>(std::lround(std::clamp(value, 0.0, 255.0))); }

double luminance(const uint8_t* rgb) { return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]; }

void adjust_brightness(ImageU8& image, double factor) {
  for (auto& value : image.pixels) value = clamp_byte(value * factor);
}

// Blend with the mean luminance (torchvision adjust_contrast).
void adjust_contrast(ImageU8& image, double factor) {
  double mean = 0.0;
  const size_t n_pixels = image.pixels.size() / 3;
  for (size_t i = 0; i < n_pixels; ++i) mean += luminance(&image.pixels[3 * i]);
  mean /= static_cast<double>(n_pixels);
  for (auto& value : image.pixels) value = clamp_byte(factor * value + (1.0 - factor) * mean);
}

// Blend with the pixel's own luminance (torchvision adjust_saturation).
void adjust_saturation(ImageU8& image, double factor) {
  const size_t n_pixels = image.pixels.size() / 3;
  for (size_t i = 0; i < n_pixels; ++i) {
    uint8_t* rgb = &image.pixels[3 * i];
    const double gray = luminance(rgb);
    for (int c = 0; c < 3; ++c) rgb[c] = clamp_byte(factor * rgb[c] + (1.0 - factor) * gray);
  }
}

void to_grayscale(ImageU8& image) {
  const size_t n_pixels = image.pixels.size() / 3;
  for (size_t i = 0; i < n_pixels; ++i) {
    uint8_t* rgb = &image.pixels[3 * i];
    rgb[0] = rgb[1] = rgb[2] = clamp_byte(luminance(rgb));
  }
}

// Separable Gaussian blur with a kernel of radius ceil(3 sigma), edges clamped.
void gaussian_blur(ImageU8& image, double sigma) {
  const int radius = std::max(1, static_cast<int>(std::ceil(3.0 * sigma)));
  std::vector<double> kernel(2 * radius + 1);
  double total = 0.0;
  for (int k = -radius; k <= radius; ++k) total += kernel[k + radius] = std::exp(-0.5 * k * k / (sigma * sigma));
  for (auto& weight : kernel) weight /= total;
  const int width = image.width, height = image.height;
  std::vector<double> rows(image.pixels.size());
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        double sum = 0.0;
        for (int k = -radius; k <= radius; ++k) {
          const int source = std::clamp(x + k, 0, width - 1);
          sum += kernel[k + radius] * image.pixels[(static_cast<size_t>(y) * width + source) * 3 + c];
        }
        rows[(static_cast<size_t>(y) * width + x) * 3 + c] = sum;
      }
    }
  }
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        double sum = 0.0;
        for (int k = -radius; k <= radius; ++k) {
          const int source = std::clamp(y + k, 0, height - 1);
          sum += kernel[k + radius] * rows[(static_cast<size_t>(source) * width + x) * 3 + c];
        }
        image.pixels[(static_cast<size_t>(y) * width + x) * 3 + c] = clamp_byte(sum);
      }
    }
  }
}

void solarize(ImageU8& image) {
  for (auto& value : image.pixels) {
    if (value >= 128) value = static_cast<uint8_t>(255 - value);
  }
}

ImageTransform normalizer(const MultiCropOptions& options, int size) {
  TransformOptions transform;
  transform.preset = TransformPreset::Train;
  transform.preprocess = options.normalize;
  transform.preprocess.crop = size;
  transform.preprocess.resize = size;
  return ImageTransform(transform);
}

}  // namespace

MultiCropAugmentation::MultiCropAugmentation(MultiCropOptions options)
    : options_(std::move(options)),
      global_normalize_(normalizer(options_, options_.global_size)),
      local_normalize_(normalizer(options_, options_.local_size)) {
  if (options_.num_local_crops < 0) throw BadInput("multi-crop: local crops must be >= 0");
}

ImageU8 MultiCropAugmentation::crop(const ImageU8& image, int crop, uint64_t seed) const {
  Rng rng(seed);
  const bool global = crop < 2;
  const int size = crop_size(crop);
  const CropBox box =
      sample_resized_crop_box(image.width, image.height, global ? options_.global_ranges : options_.local_ranges, rng);
  ImageU8 out = resized_crop(image, box, size, options_.normalize.interpolation);
  if (rng.uniform() < 0.5) out = horizontal_flip(out);
  if (rng.uniform() < options_.jitter_probability) {
    // ColorJitter applies its adjustments in a random order; hue is left out (it needs HSV and is a no-op on
    // the grey datasets this is meant for).
    const double brightness = rng.uniform(1.0 - options_.brightness, 1.0 + options_.brightness);
    const double contrast = rng.uniform(1.0 - options_.contrast, 1.0 + options_.contrast);
    const double saturation = rng.uniform(1.0 - options_.saturation, 1.0 + options_.saturation);
    int order[3] = {0, 1, 2};
    for (int i = 2; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    for (int step : order) {
      if (step == 0) adjust_brightness(out, brightness);
      if (step == 1) adjust_contrast(out, contrast);
      if (step == 2) adjust_saturation(out, saturation);
    }
  }
  if (rng.uniform() < options_.grayscale_probability) to_grayscale(out);
  const double blur_probability = crop == 0   ? options_.blur_probability_global1
                                  : crop == 1 ? options_.blur_probability_global2
                                              : options_.blur_probability_local;
  if (rng.uniform() < blur_probability) {
    const double scale = static_cast<double>(size) / 224.0;
    gaussian_blur(out, rng.uniform(options_.blur_sigma_min, options_.blur_sigma_max) * scale);
  }
  if (crop == 1 && rng.uniform() < options_.solarize_probability_global2) solarize(out);
  return out;
}

void MultiCropAugmentation::normalize_into(const ImageU8& crop_image, int crop, float* out) const {
  (crop < 2 ? global_normalize_ : local_normalize_).normalize_into(crop_image, out);
}

MultiCropLoader::MultiCropLoader(const Dataset& dataset, MultiCropOptions options, int64_t batch_size, uint64_t seed)
    : dataset_(dataset), augmentation_(std::move(options)), batch_size_(batch_size), seed_(seed) {
  if (batch_size_ < 1) throw BadInput("multi-crop loader: batch size must be >= 1");
  if (num_batches() < 1) {
    throw BadInput("multi-crop loader: " + std::to_string(dataset_.size()) + " items make no full batch of " +
                   std::to_string(batch_size_));
  }
}

int64_t MultiCropLoader::num_batches() const { return dataset_.size() / batch_size_; }

std::vector<at::Tensor> MultiCropLoader::batch(int64_t epoch, int64_t batch_index) const {
  LoaderOptions order_options;
  order_options.shuffle = true;
  order_options.seed = seed_;
  const auto order = epoch_order(dataset_.size(), order_options, epoch);
  const int n_crops = augmentation_.num_crops();
  std::vector<at::Tensor> views;
  for (int crop = 0; crop < n_crops; ++crop) {
    const int size = augmentation_.crop_size(crop);
    views.push_back(at::empty({batch_size_, 3, size, size}, at::TensorOptions().dtype(at::kFloat)));
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(batch_size_));
  at::parallel_for(0, batch_size_, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t index = order[static_cast<size_t>(batch_index * batch_size_ + row)];
      try {
        const ImageU8 image = dataset_.load(index);
        const uint64_t item_seed = sample_seed(seed_, epoch, index);
        for (int crop = 0; crop < n_crops; ++crop) {
          const ImageU8 view =
              augmentation_.crop(image, crop, derive_seed(item_seed, 0x44u, static_cast<uint64_t>(crop)));
          const int64_t values = 3LL * view.width * view.height;
          augmentation_.normalize_into(view, crop, views[static_cast<size_t>(crop)].data_ptr<float>() + row * values);
        }
      } catch (...) {
        errors[static_cast<size_t>(row)] = std::current_exception();
      }
    }
  });
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  return views;
}

}  // namespace vitprobe
