#include "jobs/preprocess_settings.h"

#include <cmath>
#include <sstream>

#include "common/errors.h"

namespace vitprobe {

std::array<float, 3> parse_triplet(const std::string& text, const std::string& flag) {
  std::array<float, 3> values{};
  std::stringstream stream(text);
  std::string item;
  int count = 0;
  while (std::getline(stream, item, ',')) {
    if (count == 3) break;
    try {
      size_t used = 0;
      values[count] = std::stof(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw BadInput(flag + " '" + text + "': expected three numbers R,G,B");
    }
    ++count;
  }
  if (count != 3 || std::getline(stream, item, ',')) throw BadInput(flag + " '" + text + "': expected three numbers R,G,B");
  return values;
}

namespace {

/// A whole-number metadata value (crop, resize) in [1, 65536]; BadInput naming the key and the text otherwise
/// (std::stoi said only "stoi", and accepted "32px").
int metadata_side(const std::string& source, const std::string& key, const std::string& text) {
  size_t used = 0;
  long value = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < 1 || value > 65536) {
    throw BadInput((source.empty() ? std::string("checkpoint") : source) + ": metadata " + key + " '" + text.substr(0, 40) + "': expected a whole number of pixels 1..65536");
  }
  return static_cast<int>(value);
}

}  // namespace

PreprocessOptions PreprocessSettings::resolve(const std::map<std::string, std::string>& metadata,
                                              int model_img_size, const std::string& source) const {
  auto from_metadata = [&](const char* key) -> std::optional<std::string> {
    const auto found = metadata.find(key);
    if (found == metadata.end()) return std::nullopt;
    return found->second;
  };
  PreprocessOptions options;
  options.crop = crop ? *crop : model_img_size;
  if (!crop) {
    if (auto value = from_metadata("crop")) options.crop = metadata_side(source, "crop", *value);
  }
  options.resize = static_cast<int>(std::floor(options.crop / 0.875));
  if (resize) {
    options.resize = *resize;
  } else if (auto value = from_metadata("resize")) {
    options.resize = metadata_side(source, "resize", *value);
  }
  if (mean) {
    options.mean = *mean;
  } else if (auto value = from_metadata("mean")) {
    options.mean = parse_triplet(*value, "metadata mean");
  }
  if (std) {
    options.std = *std;
  } else if (auto value = from_metadata("std")) {
    options.std = parse_triplet(*value, "metadata std");
  }
  const auto interpolation_name = interpolation ? interpolation : from_metadata("interpolation");
  if (interpolation_name) options.interpolation = parse_interpolation(*interpolation_name);
  if (options.crop <= 0 || options.resize < options.crop) {
    throw BadInput("preprocessing: need 0 < crop <= resize, got resize " + std::to_string(options.resize) +
                   " crop " + std::to_string(options.crop));
  }
  for (float value : options.std) {
    if (!(value > 0)) throw BadInput("preprocessing: --std values must be > 0");
  }
  return options;
}

}  // namespace vitprobe
