#include "report/image_grid.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "common/errors.h"
#include "report/cairo_output.h"

namespace vitprobe {
namespace {

using cairo_output::Font;

const Font kTitleFont{16, true};
const Font kCaptionFont{12, false};
constexpr int kGap = 8, kCaptionHeight = 22, kTitleHeight = 34, kColorBarHeight = 44;

int num_rows(const ImageGrid& grid) {
  const int columns = std::max(1, grid.columns);
  return (static_cast<int>(grid.tiles.size()) + columns - 1) / columns;
}

int title_height(const ImageGrid& grid) { return grid.title.empty() ? kGap : kTitleHeight; }

// Copies an RGB image into a cairo RGB24 surface (one 32-bit word per pixel, alpha byte unused).
cairo_surface_t* to_surface(const ImageU8& image) {
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, image.width, image.height);
  cairo_surface_flush(surface);
  unsigned char* data = cairo_image_surface_get_data(surface);
  const int stride = cairo_image_surface_get_stride(surface);
  for (int y = 0; y < image.height; ++y) {
    auto* row = reinterpret_cast<uint32_t*>(data + static_cast<size_t>(y) * stride);
    const uint8_t* source = image.pixels.data() + static_cast<size_t>(y) * image.width * 3;
    for (int x = 0; x < image.width; ++x) {
      row[x] = (uint32_t{source[3 * x]} << 16) | (uint32_t{source[3 * x + 1]} << 8) | source[3 * x + 2];
    }
  }
  cairo_surface_mark_dirty(surface);
  return surface;
}

void draw_tile(cairo_t* cr, const ImageTile& tile, double left, double top, int size) {
  cairo_surface_t* surface = to_surface(tile.image);
  cairo_save(cr);
  cairo_translate(cr, left, top);
  cairo_scale(cr, static_cast<double>(size) / tile.image.width, static_cast<double>(size) / tile.image.height);
  cairo_set_source_surface(cr, surface, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_GOOD);
  cairo_paint(cr);
  cairo_restore(cr);
  cairo_surface_destroy(surface);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_output::draw_text(cr, cairo_output::fit_text(tile.caption, kCaptionFont, size), kCaptionFont, left + size / 2.0,
                          top + size + kCaptionHeight / 2.0, 0.5);
}

void draw_color_bar(cairo_t* cr, ColorMap map, const std::string& label, double left, double top, double width) {
  cairo_pattern_t* gradient = cairo_pattern_create_linear(left, 0, left + width, 0);
  for (int stop = 0; stop <= 32; ++stop) {
    const double t = stop / 32.0;
    const Rgb color = map_color(map, t);
    cairo_pattern_add_color_stop_rgb(gradient, t, color.r, color.g, color.b);
  }
  cairo_rectangle(cr, left, top, width, 12);
  cairo_set_source(cr, gradient);
  cairo_fill(cr);
  cairo_pattern_destroy(gradient);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_output::draw_text(cr, "low", kCaptionFont, left - 6, top + 6, 1.0);
  cairo_output::draw_text(cr, "high", kCaptionFont, left + width + 6, top + 6, 0.0);
  cairo_output::draw_text(cr, label, kCaptionFont, left + width / 2, top + 26, 0.5);
}

}  // namespace

std::pair<int, int> image_grid_size(const ImageGrid& grid) {
  const int columns = std::max(1, std::min(grid.columns, static_cast<int>(grid.tiles.size())));
  const int width = kGap + columns * (grid.tile_size + kGap);
  const int height = title_height(grid) + num_rows(grid) * (grid.tile_size + kCaptionHeight + kGap) +
                     (grid.color_bar ? kColorBarHeight : 0);
  return {width, height};
}

namespace {

// Checks `grid` and draws it on `cr` of image_grid_size(grid).
void draw_grid(cairo_t* cr, const ImageGrid& grid, int width, int height) {
  const int columns = std::max(1, std::min(grid.columns, static_cast<int>(grid.tiles.size())));
  if (!grid.title.empty()) {
    cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
    cairo_output::draw_text(cr, cairo_output::fit_text(grid.title, kTitleFont, width - 2 * kGap), kTitleFont, kGap,
                            kTitleHeight / 2.0, 0.0);
  }
  for (size_t index = 0; index < grid.tiles.size(); ++index) {
    const int row = static_cast<int>(index) / columns, column = static_cast<int>(index) % columns;
    draw_tile(cr, grid.tiles[index], kGap + column * (grid.tile_size + kGap),
              title_height(grid) + row * (grid.tile_size + kCaptionHeight + kGap), grid.tile_size);
  }
  if (grid.color_bar) {
    const double bar_width = std::min(360.0, width - 120.0);
    draw_color_bar(cr, *grid.color_bar, grid.color_bar_label, (width - bar_width) / 2, height - kColorBarHeight + 4,
                   bar_width);
  }
}

void check_grid(const ImageGrid& grid, const std::string& file) {
  if (grid.tiles.empty()) throw BadInput(file + ": an image grid needs at least one tile");
  if (grid.tile_size < 16) throw BadInput(file + ": tile size " + std::to_string(grid.tile_size) + " is below 16");
  for (const auto& tile : grid.tiles) check_image(tile.image, file + ": tile '" + tile.caption + "'");
}

}  // namespace

void write_image_grid_png(const ImageGrid& grid, const std::string& file) {
  check_grid(grid, file);
  const auto [width, height] = image_grid_size(grid);
  cairo_output::write_png(file, width, height, [&](cairo_t* cr) { draw_grid(cr, grid, width, height); });
}

void write_image_grid_svg(const ImageGrid& grid, const std::string& file) {
  check_grid(grid, file);
  const auto [width, height] = image_grid_size(grid);
  cairo_output::write_svg(file, width, height, [&](cairo_t* cr) { draw_grid(cr, grid, width, height); });
}

ImageU8 overlay_heat_map(const ImageU8& image, const std::vector<float>& heat, ColorMap map, double alpha) {
  check_image(image, "overlay_heat_map");
  if (heat.size() != static_cast<size_t>(image.width) * image.height) {
    throw BadInput("overlay_heat_map: " + std::to_string(heat.size()) + " heat values for a " +
                   std::to_string(image.width) + "x" + std::to_string(image.height) + " image");
  }
  ImageU8 out = image;
  for (size_t pixel = 0; pixel < heat.size(); ++pixel) {
    const Rgb color = map_color(map, heat[pixel]);
    const double channels[3] = {color.r, color.g, color.b};
    for (int c = 0; c < 3; ++c) {
      const double blended = (1 - alpha) * image.pixels[3 * pixel + c] + alpha * 255.0 * channels[c];
      out.pixels[3 * pixel + c] = static_cast<uint8_t>(std::clamp(std::lround(blended), 0L, 255L));
    }
  }
  return out;
}

}  // namespace vitprobe
