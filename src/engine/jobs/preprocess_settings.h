#pragma once
// Image preprocessing as the user gave it on the command line; unset fields fall back to the checkpoint's
// metadata, then to the ImageNet defaults.
#include <array>
#include <map>
#include <optional>
#include <string>

#include "image/transforms.h"

namespace vitprobe {

/// Preprocessing flags shared by every command that reads images (--mean --std --resize --crop --interpolation).
struct PreprocessSettings {
  std::optional<std::array<float, 3>> mean;
  std::optional<std::array<float, 3>> std;
  std::optional<int> resize;
  std::optional<int> crop;
  std::optional<std::string> interpolation;

  /// The effective options: the flags given, else the metadata keys (mean, std, resize, crop, interpolation)
  /// of the checkpoint, else the defaults (crop = the model's image size, resize = crop / 0.875). `source`: the
  /// checkpoint file, named when its metadata is malformed.
  PreprocessOptions resolve(const std::map<std::string, std::string>& metadata, int model_img_size,
                            const std::string& source = "") const;
};

/// Parses "R,G,B" into three floats; throws BadInput naming the flag.
std::array<float, 3> parse_triplet(const std::string& text, const std::string& flag);

}  // namespace vitprobe
