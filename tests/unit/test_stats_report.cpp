// The plotting layer: ticks, colours, and PNG / SVG files of the size the layout promises.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "common/errors.h"
#include "report/colors.h"
#include "report/image_grid.h"
#include "report/plot.h"
#include "test_data_fixtures.h"

namespace vitprobe {
namespace {

using ScratchDir = test::TempDir;

std::string read_all(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Width and height from a PNG's IHDR chunk (big-endian at bytes 16..23), after checking the signature.
std::pair<int, int> png_size(const std::string& bytes) {
  const std::string signature = "\x89PNG\r\n\x1a\n";
  EXPECT_EQ(bytes.substr(0, 8), signature);
  EXPECT_EQ(bytes.substr(12, 4), "IHDR");
  auto be32 = [&](size_t at) {
    return (static_cast<unsigned char>(bytes[at]) << 24) | (static_cast<unsigned char>(bytes[at + 1]) << 16) |
           (static_cast<unsigned char>(bytes[at + 2]) << 8) | static_cast<unsigned char>(bytes[at + 3]);
  };
  return {static_cast<int>(be32(16)), static_cast<int>(be32(20))};
}

Figure two_panel_figure() {
  Figure figure;
  figure.title = "test figure";
  figure.columns = 2;
  for (int p = 0; p < 3; ++p) {
    Panel panel;
    panel.title = "panel " + std::to_string(p);
    panel.x_label = "block";
    panel.y_label = "value";
    panel.integer_x_ticks = true;
    panel.log_y = p == 2;
    for (int model = 0; model < 2; ++model) {
      LineSeries line;
      line.label = "model " + std::to_string(model);
      line.color = category_color(model);
      for (int block = 0; block < 12; ++block) {
        line.x.push_back(block);
        line.y.push_back(p == 2 ? std::pow(10.0, block - 4) : 0.1 * block * (model + 1));
        line.band_low.push_back(line.y.back() - 0.05);
        line.band_high.push_back(line.y.back() + 0.05);
      }
      panel.lines.push_back(line);
    }
    figure.panels.push_back(panel);
  }
  return figure;
}

TEST(stats, ReportNiceTicksUseOneTwoFiveSteps) {
  EXPECT_EQ(nice_ticks(0, 11, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  const auto ticks = nice_ticks(-0.013, 0.047, 5);
  ASSERT_GE(ticks.size(), 3u);
  for (double tick : ticks) {
    EXPECT_GE(tick, -0.013);
    EXPECT_LE(tick, 0.047);
  }
  EXPECT_NEAR(ticks[1] - ticks[0], 0.01, 1e-12);
  EXPECT_FALSE(nice_ticks(3, 3, 5).empty());  // a flat range still gets ticks
  EXPECT_EQ(tick_label(0.30000000000000004, 0.1), "0.3");
  EXPECT_EQ(tick_label(-1e-17, 0.1), "0.0");
  EXPECT_EQ(tick_label(20, 5), "20");
}

TEST(stats, ReportColourMapsMatchMatplotlibEnds) {
  const Rgb low = map_color(ColorMap::Viridis, 0), high = map_color(ColorMap::Viridis, 1);
  EXPECT_NEAR(low.r, 0.267, 0.015);
  EXPECT_NEAR(low.b, 0.329, 0.015);
  EXPECT_NEAR(high.r, 0.993, 0.015);
  EXPECT_NEAR(high.g, 0.906, 0.015);
  const Rgb black = map_color(ColorMap::Inferno, 0), yellow = map_color(ColorMap::Inferno, 1);
  EXPECT_LT(black.r + black.g + black.b, 0.05);
  EXPECT_GT(yellow.r, 0.95);
  EXPECT_EQ(parse_color_map("inferno"), ColorMap::Inferno);
  EXPECT_THROW(parse_color_map("jet"), BadInput);
  // tab10 first, then distinct colours.
  EXPECT_NEAR(category_color(0).r, 0x1f / 255.0, 1e-12);
  const Rgb a = category_color(10), b = category_color(11);
  EXPECT_GT(std::abs(a.r - b.r) + std::abs(a.g - b.g) + std::abs(a.b - b.b), 0.1);
}

TEST(stats, ReportPngAndSvgHaveTheLayoutSize) {
  ScratchDir dir;
  const Figure figure = two_panel_figure();
  const FigureSize size = figure_size(figure);
  EXPECT_GE(size.width, 2 * figure.panel_width + 40);  // the legend sits right of the panels
  EXPECT_EQ(size.height, 40 + 2 * figure.panel_height);
  write_png(figure, dir / "figure.png");
  write_svg(figure, dir / "figure.svg");
  EXPECT_EQ(png_size(read_all(dir / "figure.png")), std::make_pair(size.width, size.height));
  const std::string svg = read_all(dir / "figure.svg");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("width=\"" + std::to_string(size.width) + "\""), std::string::npos);
  EXPECT_NE(svg.find("height=\"" + std::to_string(size.height) + "\""), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "figure.png.tmp"));
}

TEST(stats, ReportLongLegendsWrapIntoColumns) {
  Figure figure;
  Panel panel;
  for (int label = 0; label < 40; ++label) {
    ScatterSeries points;
    points.label = "class " + std::to_string(label);
    points.color = category_color(label);
    points.x = {static_cast<double>(label)};
    points.y = {static_cast<double>(label % 7)};
    panel.points.push_back(points);
  }
  figure.panels.push_back(panel);
  figure.max_legend_entries = 30;
  const FigureSize narrow = figure_size(figure);
  figure.legend = false;
  EXPECT_GT(narrow.width, figure_size(figure).width + 150);  // at least two legend columns
}

TEST(stats, ReportBadFiguresAreRefused) {
  ScratchDir dir;
  EXPECT_THROW(write_png(Figure{}, dir / "empty.png"), BadInput);
  Figure figure = two_panel_figure();
  EXPECT_THROW(write_png(figure, dir / "missing-folder/figure.png"), IoError);
}

TEST(stats, ReportImageGridAndOverlay) {
  ScratchDir dir;
  ImageU8 image{4, 4, std::vector<uint8_t>(48, 200)};
  const auto overlay = overlay_heat_map(image, std::vector<float>(16, 1.0f), ColorMap::Inferno, 0.5);
  const Rgb top = map_color(ColorMap::Inferno, 1.0);
  EXPECT_NEAR(overlay.pixels[0], 0.5 * 200 + 0.5 * 255 * top.r, 1.0);
  EXPECT_THROW(overlay_heat_map(image, std::vector<float>(3, 0.f), ColorMap::Inferno, 0.5), BadInput);
  ImageGrid grid;
  grid.title = "grid";
  grid.tile_size = 32;
  grid.columns = 2;
  grid.color_bar = ColorMap::Viridis;
  for (int i = 0; i < 3; ++i) grid.tiles.push_back({"tile " + std::to_string(i), image});
  const auto [width, height] = image_grid_size(grid);
  write_image_grid_png(grid, dir / "grid.png");
  EXPECT_EQ(png_size(read_all(dir / "grid.png")), std::make_pair(width, height));
  EXPECT_THROW(write_image_grid_png(ImageGrid{}, dir / "none.png"), BadInput);
}

}  // namespace
}  // namespace vitprobe
