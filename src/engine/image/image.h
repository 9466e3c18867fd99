#pragma once
// 8-bit RGB images and decoding of image files into them. Decoding follows what
// `PIL.Image.open(file).convert('RGB')` produces, so that preprocessing downstream matches the
// torchvision reference pipeline pixel for pixel.
#include <cstdint>
#include <string>
#include <vector>

namespace vitprobe {

/// An 8-bit RGB image stored row-major as height x width x 3 (HWC) bytes.
struct ImageU8 {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
};

/// Throws BadInput, prefixed with `where`, unless `image` is non-empty and holds width x height x 3 bytes.
void check_image(const ImageU8& image, const std::string& where);

/// Largest width or height accepted from an image file; larger headers are treated as corrupt.
constexpr int kMaxImageSide = 32768;

/// Decodes a JPEG, PNG or binary/plain PPM/PGM file (detected by its magic bytes) into RGB;
/// throws IoError "<file>: cannot open" when unreadable and BadInput "<file>: cannot decode image: <reason>"
/// for anything that is not a complete, valid image.
ImageU8 decode_image(const std::string& file);

}  // namespace vitprobe
