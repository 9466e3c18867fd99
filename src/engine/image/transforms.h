#pragma once
// The evaluation preprocessing of timm/torchvision ImageNet models — Resize(shorter side),
// CenterCrop, ToTensor, Normalize — with torchvision 0.14's semantics on PIL images.
#include <ATen/core/Tensor.h>

#include <array>
#include <string>

#include "image/image.h"
#include "image/resize.h"

namespace vitprobe {

/// Resizes so the shorter side becomes `size` and the longer int(size * long / short), like
/// torchvision's Resize(int); returns the image unchanged when its shorter side is already `size`.
ImageU8 resize_shorter_side(const ImageU8& image, int size, Interpolation interpolation);

/// Crops the central size x size square like torchvision's CenterCrop (offsets rounded half to even),
/// zero-padding first (extra pixel on the right/bottom) any side shorter than `size`.
ImageU8 center_crop(const ImageU8& image, int size);

/// Converts to a float32 (3, H, W) tensor of (pixel / 255 - mean) / std, computed as ToTensor then
/// Normalize do so that results match bit for bit.
at::Tensor to_normalized_tensor(const ImageU8& image, const std::array<float, 3>& mean,
                                const std::array<float, 3>& std);

/// Options of the evaluation preprocessing; the defaults are the usual ImageNet ones.
struct PreprocessOptions {
  int resize = 256;
  int crop = 224;
  Interpolation interpolation = Interpolation::Bicubic;
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

/// Decodes `file` and applies resize_shorter_side, center_crop and to_normalized_tensor.
at::Tensor load_image_tensor(const std::string& file, const PreprocessOptions& options);

}  // namespace vitprobe
