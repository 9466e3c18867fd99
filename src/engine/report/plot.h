#pragma once
// A small 2-D plotting layer on cairo: a figure is a grid of panels (line and scatter series, titles, axis
// labels, ticks) with one shared legend on the right, rendered to PNG or SVG. Sizes are in pixels (SVG
// user units), so a figure has the same size in both formats.
#include <string>
#include <vector>

#include "report/colors.h"

namespace vitprobe {

/// A polyline through (x[i], y[i]); with band_low/band_high (same length) a translucent band is drawn too.
struct LineSeries {
  std::string label;  // legend entry; series with the same label share one entry
  Rgb color;
  std::vector<double> x, y;
  std::vector<double> band_low, band_high;
  double width = 2.0;
  bool markers = true;  // a dot at every point
  bool dashed = false;  // a dashed line (and legend swatch), e.g. held-out beside solid validation curves
};

/// Points at (x[i], y[i]).
struct ScatterSeries {
  std::string label;
  Rgb color;
  std::vector<double> x, y;
  double radius = 3.0;
};

/// One set of axes.
struct Panel {
  std::string title, x_label, y_label;
  std::vector<LineSeries> lines;
  std::vector<ScatterSeries> points;
  bool integer_x_ticks = false;  // ticks at whole numbers only (block indices)
  bool show_axes_ticks = true;   // false: no tick labels (t-SNE coordinates mean nothing)
  bool log_y = false;            // logarithmic y axis; values <= 0 are left out, bands are not drawn
  bool log_x = false;            // logarithmic x axis (learning rates); values <= 0 are left out
};

/// Panels laid out row-major in `columns` columns, with a title on top and a legend on the right.
struct Figure {
  std::string title;
  std::vector<Panel> panels;
  int columns = 1;
  int panel_width = 320, panel_height = 250;  // the whole cell: plot area, titles, labels, ticks
  bool legend = true;
  std::string legend_title;
  int max_legend_entries = 60;  // beyond this, one "+N more" line
};

/// Width and height of the rendered figure in pixels.
struct FigureSize {
  int width = 0, height = 0;
};

/// The size write_png / write_svg will produce for `figure`.
FigureSize figure_size(const Figure& figure);

/// Renders `figure` as a PNG (white background, 8-bit RGBA), written atomically; throws IoError naming
/// the file when it cannot be written and BadInput for a figure without panels.
void write_png(const Figure& figure, const std::string& file);

/// Renders `figure` as an SVG document whose width and height attributes are figure_size(), atomically.
void write_svg(const Figure& figure, const std::string& file);

/// Tick positions covering [low, high]: about `target` steps of 1, 2 or 5 times a power of ten, every tick
/// within the range (an empty or non-finite range gets ticks around its value).
std::vector<double> nice_ticks(double low, double high, int target = 5);

/// A tick label: the shortest of %g-style forms, with no "-0".
std::string tick_label(double value, double step);

}  // namespace vitprobe
