#include "image/transforms.h"

#include <ATen/Functions.h>

#include <algorithm>
#include <cstring>

#include "common/errors.h"
#include "common/limits.h"

namespace vitprobe {
namespace {

// Python's round() on (difference / 2.0): halves go to the even neighbour, so 0.5 -> 0, 1.5 -> 2.
int half_offset_rounded_to_even(int difference) {
  const int floor_half = difference / 2;
  if (difference % 2 == 0) return floor_half;
  return floor_half % 2 == 0 ? floor_half : floor_half + 1;
}

}  // namespace

ImageU8 resize_shorter_side(const ImageU8& image, int size, Interpolation interpolation) {
  check_image(image, "resize");
  if (size <= 0) throw BadInput("resize: size " + std::to_string(size) + " must be positive");
  const bool landscape = image.width > image.height;
  const int shorter = landscape ? image.height : image.width;
  const int longer = landscape ? image.width : image.height;
  if (shorter == size) return image;
  // torchvision computes int(size * long / short) with Python's true division; a double quotient of
  // two exact integers rounds identically, and the cast truncates like int().
  const double quotient = static_cast<double>(static_cast<long long>(size) * longer) / static_cast<double>(shorter);
  // Checked here, before the cast, because a thin strip makes the longer side overflow an int.
  if (quotient * size > static_cast<double>(kMaxResizeOutputPixels)) {
    throw BadInput("resize: " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                   " with its shorter side to " + std::to_string(size) + " would exceed the limit of " +
                   std::to_string(kMaxResizeOutputPixels) + " output pixels (extreme aspect ratio?)");
  }
  const int new_longer = static_cast<int>(quotient);
  return landscape ? resize(image, new_longer, size, interpolation)
                   : resize(image, size, new_longer, interpolation);
}

ImageU8 center_crop(const ImageU8& image, int size) {
  check_image(image, "center crop");
  if (size <= 0) throw BadInput("center crop: size " + std::to_string(size) + " must be positive");
  // torchvision pads a too-small side with zeros, half on each side with the odd pixel on the
  // right/bottom, and then crops the padded image as usual; both steps collapse into one offset.
  const int pad_left = size > image.width ? (size - image.width) / 2 : 0;
  const int pad_top = size > image.height ? (size - image.height) / 2 : 0;
  const int padded_width = std::max(image.width, size);
  const int padded_height = std::max(image.height, size);
  const int left = half_offset_rounded_to_even(padded_width - size) - pad_left;
  const int top = half_offset_rounded_to_even(padded_height - size) - pad_top;

  ImageU8 out;
  out.width = size;
  out.height = size;
  out.pixels.assign(static_cast<size_t>(size) * size * 3, 0);
  const int x_begin = std::max(0, -left), x_end = std::min(size, image.width - left);
  for (int y = 0; y < size; ++y) {
    const int source_y = top + y;
    if (source_y < 0 || source_y >= image.height || x_begin >= x_end) continue;
    std::memcpy(&out.pixels[(static_cast<size_t>(y) * size + x_begin) * 3],
                &image.pixels[(static_cast<size_t>(source_y) * image.width + left + x_begin) * 3],
                static_cast<size_t>(x_end - x_begin) * 3);
  }
  return out;
}

at::Tensor to_normalized_tensor(const ImageU8& image, const std::array<float, 3>& mean,
                                const std::array<float, 3>& std) {
  check_image(image, "normalize");
  for (float value : std) {
    if (!(value != 0.0f)) throw BadInput("normalize: std " + std::to_string(value) + " must be non-zero");
  }
  const at::Tensor hwc = at::from_blob(const_cast<uint8_t*>(image.pixels.data()), {image.height, image.width, 3},
                                       at::TensorOptions().dtype(at::kByte));
  // The same ATen operations as ToTensor (float, then divide by 255) and Normalize (subtract, divide),
  // in the same order, so every value is rounded exactly as in torchvision.
  const at::Tensor chw = hwc.permute({2, 0, 1}).contiguous().to(at::kFloat).div(255);
  const at::Tensor mean_tensor = at::tensor(std::vector<float>(mean.begin(), mean.end())).view({3, 1, 1});
  const at::Tensor std_tensor = at::tensor(std::vector<float>(std.begin(), std.end())).view({3, 1, 1});
  return chw.sub(mean_tensor).div(std_tensor);
}

at::Tensor load_image_tensor(const std::string& file, const PreprocessOptions& options) {
  const ImageU8 decoded = decode_image(file);
  try {
    const ImageU8 resized = resize_shorter_side(decoded, options.resize, options.interpolation);
    return to_normalized_tensor(center_crop(resized, options.crop), options.mean, options.std);
  } catch (const BadInput& error) {
    throw BadInput(file + ": " + error.what());  // a size that cannot be resized is this file's
  }
}

}  // namespace vitprobe
