#include "jobs/pretrain_views.h"

#include <algorithm>
#include <cmath>

namespace vitprobe {
namespace {

constexpr int64_t kMeanStdSampleItems = 10000;

}  // namespace

std::pair<std::array<float, 3>, std::array<float, 3>> measure_mean_std(const Dataset& dataset, uint64_t seed) {
  const auto items = balanced_subset(dataset, kMeanStdSampleItems, seed);
  double sum[3] = {0, 0, 0}, sum_squares[3] = {0, 0, 0};
  double count = 0;
  for (int64_t index : items) {
    const ImageU8 image = dataset.load(index);
    const size_t n_pixels = image.pixels.size() / 3;
    for (size_t i = 0; i < n_pixels; ++i) {
      for (int c = 0; c < 3; ++c) {
        const double value = image.pixels[3 * i + c] / 255.0;
        sum[c] += value;
        sum_squares[c] += value * value;
      }
    }
    count += static_cast<double>(n_pixels);
  }
  std::array<float, 3> mean{}, std{};
  for (int c = 0; c < 3; ++c) {
    const double m = sum[c] / count;
    mean[c] = static_cast<float>(m);
    std[c] = static_cast<float>(std::sqrt(std::max(sum_squares[c] / count - m * m, 1e-12)));
  }
  return {mean, std};
}

int local_crop_size(const PretrainOptions& options, const VitConfig& config) {
  if (options.dino.local_crop_size > 0) return options.dino.local_crop_size;
  // DINO's 96 px local crops for 224 px inputs, at this resolution, on whole patches.
  const int patches = std::max(1, static_cast<int>(std::lround(config.img_size * 96.0 / 224.0 / config.patch_size)));
  return patches * config.patch_size;
}

}  // namespace vitprobe
