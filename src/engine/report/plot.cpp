#include "report/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "common/errors.h"
#include "report/cairo_output.h"

namespace vitprobe {
namespace {

using cairo_output::draw_text;
using cairo_output::draw_vertical_text;
using cairo_output::Font;
using cairo_output::text_width;

const Font kTitleFont{17, true};
const Font kPanelTitleFont{13, true};
const Font kLabelFont{12, false};
const Font kTickFont{10.5, false};
const Font kLegendFont{12, false};

// Space inside a panel cell around its plot area.
constexpr double kCellLeft = 64, kCellRight = 14, kCellTop = 30, kCellBottom = 46;
constexpr double kFigureTitleHeight = 40;
constexpr double kLegendRowHeight = 20, kLegendSwatch = 26, kLegendPadding = 14;
constexpr double kLegendMaxTextWidth = 220;

struct LegendEntry {
  std::string label;
  Rgb color;
  bool line = true;
  bool dashed = false;
};

struct LegendLayout {
  std::vector<LegendEntry> entries;
  int more = 0;  // entries left out
  int columns = 0, rows_per_column = 0;
  double column_width = 0, width = 0;
};

struct Range {
  double low = std::numeric_limits<double>::infinity();
  double high = -std::numeric_limits<double>::infinity();
  void add(double value) {
    if (!std::isfinite(value)) return;
    low = std::min(low, value);
    high = std::max(high, value);
  }
  bool empty() const { return !(low <= high); }
};

int num_rows(const Figure& figure) {
  const int columns = std::max(1, figure.columns);
  return (static_cast<int>(figure.panels.size()) + columns - 1) / columns;
}

double panels_height(const Figure& figure) {
  return (figure.title.empty() ? 8 : kFigureTitleHeight) + num_rows(figure) * figure.panel_height;
}

std::vector<LegendEntry> legend_entries(const Figure& figure) {
  std::vector<LegendEntry> entries;
  auto add = [&](const std::string& label, const Rgb& color, bool line, bool dashed) {
    if (label.empty()) return;
    for (const auto& entry : entries) {
      if (entry.label == label) return;
    }
    entries.push_back({label, color, line, dashed});
  };
  for (const auto& panel : figure.panels) {
    for (const auto& series : panel.lines) add(series.label, series.color, true, series.dashed);
    for (const auto& series : panel.points) add(series.label, series.color, false, false);
  }
  return entries;
}

LegendLayout legend_layout(const Figure& figure) {
  LegendLayout layout;
  if (!figure.legend) return layout;
  layout.entries = legend_entries(figure);
  if (layout.entries.empty()) return layout;
  const int limit = std::max(1, figure.max_legend_entries);
  if (static_cast<int>(layout.entries.size()) > limit) {
    layout.more = static_cast<int>(layout.entries.size()) - limit;
    layout.entries.resize(static_cast<size_t>(limit));
  }
  double text = figure.legend_title.empty() ? 0 : text_width(figure.legend_title, kPanelTitleFont) - kLegendSwatch;
  for (const auto& entry : layout.entries) text = std::max(text, text_width(entry.label, kLegendFont));
  if (layout.more) text = std::max(text, text_width("+" + std::to_string(layout.more) + " more", kLegendFont));
  text = std::min(text, kLegendMaxTextWidth);
  layout.column_width = kLegendSwatch + 6 + text + kLegendPadding;
  const double usable = panels_height(figure) - 2 * kLegendPadding - (figure.legend_title.empty() ? 0 : kLegendRowHeight);
  layout.rows_per_column = std::max(1, static_cast<int>(usable / kLegendRowHeight));
  const int n_rows = static_cast<int>(layout.entries.size()) + (layout.more ? 1 : 0);
  layout.columns = (n_rows + layout.rows_per_column - 1) / layout.rows_per_column;
  layout.width = layout.columns * layout.column_width + kLegendPadding;
  return layout;
}

FigureSize size_with(const Figure& figure, const LegendLayout& legend) {
  FigureSize size;
  size.width = std::max(1, figure.columns) * figure.panel_width + static_cast<int>(std::ceil(legend.width));
  size.height = static_cast<int>(std::ceil(panels_height(figure)));
  return size;
}

void set_color(cairo_t* cr, const Rgb& color, double alpha = 1.0) { cairo_set_source_rgba(cr, color.r, color.g, color.b, alpha); }

// A y value as plotted: its base-10 logarithm on a log axis (NaN for values <= 0, which are left out).
double plotted_y(const Panel& panel, double value) {
  if (!panel.log_y) return value;
  return value > 0 ? std::log10(value) : std::numeric_limits<double>::quiet_NaN();
}

// An x value as plotted: its base-10 logarithm on a log axis (NaN for values <= 0).
double plotted_x(const Panel& panel, double value) {
  if (!panel.log_x) return value;
  return value > 0 ? std::log10(value) : std::numeric_limits<double>::quiet_NaN();
}

// Data ranges of a panel (x and y as plotted), padded by 5% (a flat series gets a unit-sized range around its value).
std::pair<Range, Range> panel_ranges(const Panel& panel) {
  Range x, y;
  for (const auto& series : panel.lines) {
    for (double value : series.x) x.add(plotted_x(panel, value));
    for (double value : series.y) y.add(plotted_y(panel, value));
    if (panel.log_y) continue;
    for (double value : series.band_low) y.add(value);
    for (double value : series.band_high) y.add(value);
  }
  for (const auto& series : panel.points) {
    for (double value : series.x) x.add(plotted_x(panel, value));
    for (double value : series.y) y.add(plotted_y(panel, value));
  }
  for (Range* range : {&x, &y}) {
    if (range->empty()) {
      range->low = 0;
      range->high = 1;
    }
    double span = range->high - range->low;
    if (span <= 1e-12 * std::max(1.0, std::abs(range->high))) {
      const double half = std::max(0.5 * std::abs(range->high), 0.5);
      range->low -= half;
      range->high += half;
      span = range->high - range->low;
    }
    range->low -= 0.05 * span;
    range->high += 0.05 * span;
  }
  return {x, y};
}

// Ticks of a log axis (in log10 units): whole decades, or 1-2-5 steps when the range spans few decades.
std::vector<double> log_ticks(double low, double high) {
  std::vector<double> ticks;
  for (double decade = std::ceil(low); decade <= high; decade += 1) ticks.push_back(decade);
  if (ticks.size() >= 3) return ticks;
  ticks.clear();
  for (double decade = std::floor(low); decade <= high; decade += 1) {
    for (double factor : {1.0, 2.0, 5.0}) {
      const double tick = decade + std::log10(factor);
      if (tick >= low && tick <= high) ticks.push_back(tick);
    }
  }
  return ticks;
}

std::string log_tick_label(double tick) {
  const bool decade = std::abs(tick - std::round(tick)) < 1e-9;
  char text[32];
  if (decade && std::abs(tick) >= 4) {
    std::snprintf(text, sizeof text, "1e%d", static_cast<int>(std::round(tick)));
  } else {
    std::snprintf(text, sizeof text, "%g", std::pow(10.0, tick));
  }
  return text;
}

void draw_panel(cairo_t* cr, const Panel& panel, double left, double top, double width, double height) {
  const double plot_left = left + kCellLeft, plot_top = top + kCellTop;
  const double plot_width = width - kCellLeft - kCellRight, plot_height = height - kCellTop - kCellBottom;
  const auto [x_range, y_range] = panel_ranges(panel);
  auto to_x = [&](double value) { return plot_left + (value - x_range.low) / (x_range.high - x_range.low) * plot_width; };
  // y positions of plotted values (already log10 on a log axis); to_data_y maps data values.
  auto to_y = [&](double value) {
    return plot_top + plot_height - (value - y_range.low) / (y_range.high - y_range.low) * plot_height;
  };
  auto to_data_y = [&](double value) { return to_y(plotted_y(panel, value)); };
  auto to_data_x = [&](double value) { return to_x(plotted_x(panel, value)); };

  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  draw_text(cr, cairo_output::fit_text(panel.title, kPanelTitleFont, width - 8), kPanelTitleFont,
            plot_left + plot_width / 2, top + kCellTop / 2, 0.5);
  draw_text(cr, panel.x_label, kLabelFont, plot_left + plot_width / 2, top + height - 12, 0.5);
  draw_vertical_text(cr, panel.y_label, kLabelFont, left + 12, plot_top + plot_height / 2);

  // Grid lines and ticks.
  auto x_ticks = panel.log_x ? log_ticks(x_range.low, x_range.high)
                             : nice_ticks(x_range.low, x_range.high, std::max(3, static_cast<int>(plot_width / 60)));
  if (panel.integer_x_ticks && !panel.log_x) {
    std::vector<double> whole;
    for (double tick : x_ticks) {
      if (std::abs(tick - std::round(tick)) < 1e-9) whole.push_back(std::round(tick));
    }
    x_ticks = whole;
  }
  const auto y_ticks = panel.log_y ? log_ticks(y_range.low, y_range.high)
                                   : nice_ticks(y_range.low, y_range.high, std::max(3, static_cast<int>(plot_height / 40)));
  const double x_step = x_ticks.size() > 1 ? x_ticks[1] - x_ticks[0] : 1.0;
  const double y_step = y_ticks.size() > 1 ? y_ticks[1] - y_ticks[0] : 1.0;
  cairo_set_line_width(cr, 1.0);
  for (double tick : x_ticks) {
    cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
    cairo_move_to(cr, to_x(tick), plot_top);
    cairo_line_to(cr, to_x(tick), plot_top + plot_height);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, to_x(tick), plot_top + plot_height);
    cairo_line_to(cr, to_x(tick), plot_top + plot_height + 4);
    cairo_stroke(cr);
    if (panel.show_axes_ticks) {
      draw_text(cr, panel.log_x ? log_tick_label(tick) : tick_label(tick, x_step), kTickFont, to_x(tick),
                plot_top + plot_height + 13, 0.5);
    }
  }
  for (double tick : y_ticks) {
    cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
    cairo_move_to(cr, plot_left, to_y(tick));
    cairo_line_to(cr, plot_left + plot_width, to_y(tick));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, plot_left - 4, to_y(tick));
    cairo_line_to(cr, plot_left, to_y(tick));
    cairo_stroke(cr);
    if (panel.show_axes_ticks) {
      draw_text(cr, panel.log_y ? log_tick_label(tick) : tick_label(tick, y_step), kTickFont, plot_left - 6, to_y(tick), 1.0);
    }
  }

  cairo_save(cr);
  cairo_rectangle(cr, plot_left, plot_top, plot_width, plot_height);
  cairo_clip(cr);
  for (const auto& series : panel.lines) {
    const size_t n = std::min(series.x.size(), series.y.size());
    if (!panel.log_y && series.band_low.size() == n && series.band_high.size() == n && n > 1) {
      for (size_t i = 0; i < n; ++i) cairo_line_to(cr, to_data_x(series.x[i]), to_y(series.band_high[i]));
      for (size_t i = n; i-- > 0;) cairo_line_to(cr, to_data_x(series.x[i]), to_y(series.band_low[i]));
      cairo_close_path(cr);
      set_color(cr, series.color, 0.15);
      cairo_fill(cr);
    }
    set_color(cr, series.color);
    cairo_set_line_width(cr, series.width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    const double dashes[] = {3 * series.width, 2 * series.width};
    cairo_set_dash(cr, dashes, series.dashed ? 2 : 0, 0);
    // Values that cannot be plotted (<= 0 on a log axis, non-finite) break the line.
    for (size_t i = 0; i < n; ++i) {
      const double x = to_data_x(series.x[i]), y = to_data_y(series.y[i]);
      if (std::isfinite(y) && std::isfinite(x)) {
        cairo_line_to(cr, x, y);
      } else {
        cairo_stroke(cr);
      }
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    if (series.markers) {
      for (size_t i = 0; i < n; ++i) {
        const double x = to_data_x(series.x[i]), y = to_data_y(series.y[i]);
        if (!std::isfinite(y) || !std::isfinite(x)) continue;
        cairo_new_sub_path(cr);
        cairo_arc(cr, x, y, series.width + 1.0, 0, 2 * M_PI);
      }
      cairo_fill(cr);
    }
  }
  for (const auto& series : panel.points) {
    set_color(cr, series.color, 0.85);
    const size_t n = std::min(series.x.size(), series.y.size());
    for (size_t i = 0; i < n; ++i) {
      const double x = to_data_x(series.x[i]), y = to_data_y(series.y[i]);
      if (!std::isfinite(y) || !std::isfinite(x)) continue;
      cairo_new_sub_path(cr);
      cairo_arc(cr, x, y, series.radius, 0, 2 * M_PI);
    }
    cairo_fill(cr);
  }
  cairo_restore(cr);

  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_set_line_width(cr, 1.0);
  cairo_rectangle(cr, plot_left, plot_top, plot_width, plot_height);
  cairo_stroke(cr);
}

void draw_legend(cairo_t* cr, const Figure& figure, const LegendLayout& legend, double left, double top) {
  double y = top + kLegendPadding + kLegendRowHeight / 2;
  if (!figure.legend_title.empty()) {
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    draw_text(cr, figure.legend_title, kPanelTitleFont, left + kLegendPadding, y, 0.0);
    y += kLegendRowHeight;
  }
  const double text_limit = legend.column_width - kLegendSwatch - 6 - kLegendPadding;
  const int n_rows = static_cast<int>(legend.entries.size()) + (legend.more ? 1 : 0);
  for (int row = 0; row < n_rows; ++row) {
    const int column = row / legend.rows_per_column;
    const double x = left + kLegendPadding + column * legend.column_width;
    const double row_y = y + (row % legend.rows_per_column) * kLegendRowHeight;
    if (row == static_cast<int>(legend.entries.size())) {
      cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
      draw_text(cr, "+" + std::to_string(legend.more) + " more", kLegendFont, x + kLegendSwatch + 6, row_y, 0.0);
      continue;
    }
    const auto& entry = legend.entries[static_cast<size_t>(row)];
    set_color(cr, entry.color);
    if (entry.line) {
      cairo_set_line_width(cr, 2.5);
      const double dashes[] = {6, 4};
      cairo_set_dash(cr, dashes, entry.dashed ? 2 : 0, 0);
      cairo_move_to(cr, x, row_y);
      cairo_line_to(cr, x + kLegendSwatch, row_y);
      cairo_stroke(cr);
      cairo_set_dash(cr, nullptr, 0, 0);
    }
    cairo_arc(cr, x + kLegendSwatch / 2, row_y, entry.line ? 3.5 : 4.5, 0, 2 * M_PI);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    draw_text(cr, cairo_output::fit_text(entry.label, kLegendFont, text_limit), kLegendFont, x + kLegendSwatch + 6,
              row_y, 0.0);
  }
}

void draw_figure(cairo_t* cr, const Figure& figure, const LegendLayout& legend) {
  const double panels_top = figure.title.empty() ? 8 : kFigureTitleHeight;
  const int columns = std::max(1, figure.columns);
  if (!figure.title.empty()) {
    cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
    draw_text(cr, cairo_output::fit_text(figure.title, kTitleFont, columns * figure.panel_width + legend.width - 20),
              kTitleFont, 12, kFigureTitleHeight / 2, 0.0);
  }
  for (size_t index = 0; index < figure.panels.size(); ++index) {
    const int row = static_cast<int>(index) / columns, column = static_cast<int>(index) % columns;
    draw_panel(cr, figure.panels[index], column * figure.panel_width, panels_top + row * figure.panel_height,
               figure.panel_width, figure.panel_height);
  }
  if (!legend.entries.empty()) draw_legend(cr, figure, legend, columns * figure.panel_width, panels_top);
}

void check_figure(const Figure& figure, const std::string& file) {
  if (figure.panels.empty()) throw BadInput(file + ": a figure needs at least one panel");
  if (figure.panel_width < 120 || figure.panel_height < 100) {
    throw BadInput(file + ": panel size " + std::to_string(figure.panel_width) + "x" +
                   std::to_string(figure.panel_height) + " is too small (at least 120x100)");
  }
}

}  // namespace

FigureSize figure_size(const Figure& figure) { return size_with(figure, legend_layout(figure)); }

void write_png(const Figure& figure, const std::string& file) {
  check_figure(figure, file);
  const auto legend = legend_layout(figure);
  const auto size = size_with(figure, legend);
  cairo_output::write_png(file, size.width, size.height, [&](cairo_t* cr) { draw_figure(cr, figure, legend); });
}

void write_svg(const Figure& figure, const std::string& file) {
  check_figure(figure, file);
  const auto legend = legend_layout(figure);
  const auto size = size_with(figure, legend);
  cairo_output::write_svg(file, size.width, size.height, [&](cairo_t* cr) { draw_figure(cr, figure, legend); });
}

std::vector<double> nice_ticks(double low, double high, int target) {
  if (!std::isfinite(low) || !std::isfinite(high)) return {};
  if (low > high) std::swap(low, high);
  if (high - low < 1e-12 * std::max(1.0, std::abs(high))) {
    low -= 0.5;
    high += 0.5;
  }
  target = std::max(1, target);
  const double raw_step = (high - low) / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw_step)));
  // The 1-2-5 step whose number of intervals is closest (in ratio) to the target.
  double step = magnitude, best = std::numeric_limits<double>::infinity();
  for (double factor : {1.0, 2.0, 5.0, 10.0}) {
    const double miss = std::abs(std::log((high - low) / (factor * magnitude) / target));
    if (miss < best) best = miss, step = factor * magnitude;
  }
  std::vector<double> ticks;
  const double first = std::ceil(low / step - 1e-9) * step;
  for (double tick = first; tick <= high + 1e-9 * step; tick += step) {
    ticks.push_back(std::abs(tick) < 1e-12 * step ? 0.0 : tick);
    if (ticks.size() > 1000) break;
  }
  return ticks;
}

std::string tick_label(double value, double step) {
  if (std::abs(value) < 1e-12 * std::max(1.0, std::abs(step))) value = 0.0;
  // Enough decimals to tell neighbouring ticks apart, and no more.
  const int decimals = step > 0 ? std::clamp(static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), 0, 8) : 3;
  char text[64];
  const double magnitude = std::abs(value);
  if (magnitude != 0 && (magnitude >= 1e6 || magnitude < 1e-4)) {
    std::snprintf(text, sizeof text, "%.2g", value);
  } else {
    std::snprintf(text, sizeof text, "%.*f", decimals, value);
  }
  return text;
}

}  // namespace vitprobe
