#pragma once
// A grid of captioned RGB images (attention maps next to the image they belong to), written as PNG or SVG
// with cairo, with an optional colour bar explaining the heat-map colours.
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"
#include "report/colors.h"

namespace vitprobe {

/// One cell of the grid.
struct ImageTile {
  std::string caption;
  ImageU8 image;
};

/// Tiles laid out row-major; every tile is drawn at tile_size x tile_size (scaled if it differs).
struct ImageGrid {
  std::string title;
  std::vector<ImageTile> tiles;
  int columns = 4;
  int tile_size = 224;
  std::optional<ColorMap> color_bar;  // a horizontal bar "low ... high" under the grid
  std::string color_bar_label;
};

/// Width and height of the PNG write_image_grid_png produces.
std::pair<int, int> image_grid_size(const ImageGrid& grid);

/// Renders `grid` as a PNG, atomically; throws BadInput for an empty grid or a malformed tile.
void write_image_grid_png(const ImageGrid& grid, const std::string& file);

/// The same as an SVG document of the same size (the tiles embedded as PNG images), atomically.
void write_image_grid_svg(const ImageGrid& grid, const std::string& file);

/// Blends a heat map over `image`: `heat` holds image.width x image.height values in [0, 1] (row-major);
/// each pixel becomes (1 - alpha) * image + alpha * colour(heat).
ImageU8 overlay_heat_map(const ImageU8& image, const std::vector<float>& heat, ColorMap map, double alpha);

}  // namespace vitprobe
