#pragma once
// The evaluation preprocessing as results, stats.json and probe head configs record it.
#include <nlohmann/json_fwd.hpp>

#include "image/transforms.h"

namespace vitprobe {

/// The options as JSON: resize, crop, interpolation ("bicubic"/"bilinear"), mean and std (three numbers each).
nlohmann::json preprocess_json(const PreprocessOptions& options);

}  // namespace vitprobe
