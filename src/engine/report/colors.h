#pragma once
// Colours of the figures: a categorical palette for lines and classes, and perceptual colour maps for
// attention heat maps.
#include <cstdint>
#include <string>

namespace vitprobe {

/// An sRGB colour with components in [0, 1].
struct Rgb {
  double r = 0, g = 0, b = 0;
};

/// The i-th colour of a categorical palette: matplotlib's tab10 for the first ten, then evenly spaced
/// hues in alternating lightness, so any number of classes gets distinguishable colours.
Rgb category_color(int64_t index);

/// Perceptual colour maps (matplotlib's viridis and inferno).
enum class ColorMap { Viridis, Inferno };

/// Parses "viridis" or "inferno"; throws BadInput naming the value otherwise.
ColorMap parse_color_map(const std::string& name);

/// The colour of `value` in [0, 1] (clamped) under `map`.
Rgb map_color(ColorMap map, double value);

}  // namespace vitprobe
