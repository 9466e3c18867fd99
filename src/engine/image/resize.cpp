#include "image/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/errors.h"
#include "common/limits.h"

namespace vitprobe {
namespace {

// Pillow computes each output sample in fixed point: weights carry 22 fractional bits so that an
// 8-bit sample times a weight, summed with negative lobes, stays inside a signed 32-bit integer.
constexpr int kPrecisionBits = 32 - 8 - 2;

double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Keys' cubic convolution kernel with a = -0.5 (the Catmull-Rom spline), as in Pillow.
double cubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// For each output sample along one axis: the first input sample it reads, how many it reads, and
// the fixed-point weight of each (`taps` slots per output sample, unused ones zero).
struct FilterBank {
  int taps = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;
};

FilterBank make_filter_bank(int in_size, int out_size, Interpolation interpolation) {
  double (*kernel)(double) = interpolation == Interpolation::Bicubic ? cubic : triangle;
  const double kernel_support = interpolation == Interpolation::Bicubic ? 2.0 : 1.0;

  // When shrinking, the kernel is stretched by the shrink factor so that it averages over every input
  // sample that maps to an output sample (antialiasing); when enlarging it keeps its natural width.
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = kernel_support * filter_scale;
  const double inverse_filter_scale = 1.0 / filter_scale;

  FilterBank bank;
  bank.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  bank.first.resize(out_size);
  bank.count.resize(out_size);
  bank.weights.assign(static_cast<size_t>(out_size) * bank.taps, 0);
  std::vector<double> real_weights(bank.taps);
  for (int out = 0; out < out_size; ++out) {
    // Sample centres sit at half-integers; bounds round to nearest and are clipped to the image, which
    // is how Pillow handles edges (renormalising the truncated kernel instead of padding).
    const double center = (out + 0.5) * scale;
    const int first = std::max(static_cast<int>(center - support + 0.5), 0);
    const int last = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int count = last - first;
    double total = 0.0;
    for (int i = 0; i < count; ++i) {
      real_weights[i] = kernel((i + first - center + 0.5) * inverse_filter_scale);
      total += real_weights[i];
    }
    int32_t* weights = &bank.weights[static_cast<size_t>(out) * bank.taps];
    for (int i = 0; i < count; ++i) {
      const double normalized = total != 0.0 ? real_weights[i] / total : real_weights[i];
      // Round half away from zero, as Pillow's conversion to fixed point does.
      const double fixed = normalized * (1 << kPrecisionBits);
      weights[i] = static_cast<int32_t>(normalized < 0 ? fixed - 0.5 : fixed + 0.5);
    }
    bank.first[out] = first;
    bank.count[out] = count;
  }
  return bank;
}

// Rounds a fixed-point accumulator (which started at one half) down to 8 bits, clipping the overshoot
// of the cubic kernel's negative lobes.
uint8_t to_u8(int64_t accumulator) {
  return static_cast<uint8_t>(std::clamp<int64_t>(accumulator >> kPrecisionBits, 0, 255));
}

// Resamples rows [first_row, first_row + n_rows) of `in` horizontally to `bank`'s output width.
ImageU8 resample_rows(const ImageU8& in, const FilterBank& bank, int first_row, int n_rows) {
  ImageU8 out;
  out.width = static_cast<int>(bank.first.size());
  out.height = n_rows;
  out.pixels.resize(static_cast<size_t>(out.width) * out.height * 3);
  constexpr int64_t kHalf = int64_t{1} << (kPrecisionBits - 1);
  for (int y = 0; y < n_rows; ++y) {
    const uint8_t* in_row = &in.pixels[static_cast<size_t>(first_row + y) * in.width * 3];
    uint8_t* out_row = &out.pixels[static_cast<size_t>(y) * out.width * 3];
    for (int x = 0; x < out.width; ++x) {
      const int32_t* weights = &bank.weights[static_cast<size_t>(x) * bank.taps];
      const uint8_t* source = in_row + static_cast<size_t>(bank.first[x]) * 3;
      int64_t red = kHalf, green = kHalf, blue = kHalf;
      for (int i = 0; i < bank.count[x]; ++i) {
        red += source[3 * i] * static_cast<int64_t>(weights[i]);
        green += source[3 * i + 1] * static_cast<int64_t>(weights[i]);
        blue += source[3 * i + 2] * static_cast<int64_t>(weights[i]);
      }
      out_row[3 * x] = to_u8(red);
      out_row[3 * x + 1] = to_u8(green);
      out_row[3 * x + 2] = to_u8(blue);
    }
  }
  return out;
}

// Resamples `in` vertically; `row_offset` is the input row that `bank`'s row indices count from.
ImageU8 resample_columns(const ImageU8& in, const FilterBank& bank, int row_offset) {
  ImageU8 out;
  out.width = in.width;
  out.height = static_cast<int>(bank.first.size());
  out.pixels.resize(static_cast<size_t>(out.width) * out.height * 3);
  const size_t row_stride = static_cast<size_t>(in.width) * 3;
  constexpr int64_t kHalf = int64_t{1} << (kPrecisionBits - 1);
  std::vector<int64_t> sums(row_stride);
  for (int y = 0; y < out.height; ++y) {
    const int32_t* weights = &bank.weights[static_cast<size_t>(y) * bank.taps];
    std::fill(sums.begin(), sums.end(), kHalf);
    // Row by row so that the inner loop walks memory contiguously; integer sums make the order exact.
    for (int i = 0; i < bank.count[y]; ++i) {
      const uint8_t* in_row = &in.pixels[static_cast<size_t>(bank.first[y] - row_offset + i) * row_stride];
      const int64_t weight = weights[i];
      for (size_t j = 0; j < row_stride; ++j) sums[j] += in_row[j] * weight;
    }
    uint8_t* out_row = &out.pixels[static_cast<size_t>(y) * row_stride];
    for (size_t j = 0; j < row_stride; ++j) out_row[j] = to_u8(sums[j]);
  }
  return out;
}

}  // namespace

Interpolation parse_interpolation(const std::string& name) {
  if (name == "bilinear") return Interpolation::Bilinear;
  if (name == "bicubic") return Interpolation::Bicubic;
  throw BadInput("interpolation '" + name + "': expected 'bilinear' or 'bicubic'");
}

std::string interpolation_name(Interpolation interpolation) {
  return interpolation == Interpolation::Bicubic ? "bicubic" : "bilinear";
}

ImageU8 resize(const ImageU8& image, int width, int height, Interpolation interpolation) {
  if (width <= 0 || height <= 0) {
    throw BadInput("resize: target size " + std::to_string(width) + "x" + std::to_string(height) +
                   " must be positive");
  }
  if (static_cast<uint64_t>(width) * static_cast<uint64_t>(height) > kMaxResizeOutputPixels) {
    throw BadInput("resize: " + std::to_string(image.width) + "x" + std::to_string(image.height) + " to " +
                   std::to_string(width) + "x" + std::to_string(height) + " would exceed the limit of " +
                   std::to_string(kMaxResizeOutputPixels) + " output pixels (extreme aspect ratio?)");
  }
  check_image(image, "resize");
  if (width == image.width && height == image.height) return image;

  // Like Pillow, each pass is skipped when its axis keeps its size, and the horizontal pass only
  // produces the rows that the vertical pass will read.
  const bool resize_rows = height != image.height;
  FilterBank vertical;
  int first_row = 0, end_row = image.height;
  if (resize_rows) {
    vertical = make_filter_bank(image.height, height, interpolation);
    first_row = vertical.first.front();
    end_row = vertical.first.back() + vertical.count.back();
  }
  ImageU8 horizontal_result;
  const ImageU8* rows = &image;
  int row_offset = 0;
  if (width != image.width) {
    horizontal_result =
        resample_rows(image, make_filter_bank(image.width, width, interpolation), first_row, end_row - first_row);
    rows = &horizontal_result;
    row_offset = first_row;
  }
  if (!resize_rows) return *rows;
  return resample_columns(*rows, vertical, row_offset);
}

}  // namespace vitprobe
