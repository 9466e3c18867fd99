#include "image/preprocess_json.h"

#include <nlohmann/json.hpp>

namespace vitprobe {

nlohmann::json preprocess_json(const PreprocessOptions& options) {
  return {{"resize", options.resize},
          {"crop", options.crop},
          {"interpolation", options.interpolation == Interpolation::Bicubic ? "bicubic" : "bilinear"},
          {"mean", options.mean},
          {"std", options.std}};
}

}  // namespace vitprobe
