#pragma once
// Resampling of RGB images that reproduces Pillow 9.4's Image.resize (ImagingResample) for the
// bilinear and bicubic filters, including its fixed-point rounding, so outputs match PIL exactly.
#include <string>

#include "image/image.h"

namespace vitprobe {

/// Resampling filter used when resizing.
enum class Interpolation { Bilinear, Bicubic };

/// Parses "bilinear" or "bicubic"; throws BadInput naming the value otherwise.
Interpolation parse_interpolation(const std::string& name);

/// The lower-case name of `interpolation`, as accepted by parse_interpolation.
std::string interpolation_name(Interpolation interpolation);

/// Resizes `image` to width x height like PIL's Image.resize: antialiased separable convolution,
/// horizontal pass then vertical pass, each rounded to 8 bits; throws BadInput for non-positive sizes.
ImageU8 resize(const ImageU8& image, int width, int height, Interpolation interpolation);

}  // namespace vitprobe
