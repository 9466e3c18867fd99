#pragma once
// Internal to report/: cairo surfaces written atomically as PNG or SVG files, and text helpers shared by
// the plots and the image grids. Only report/*.cpp include this (cairo stays a private dependency).
#include <cairo.h>

#include <functional>
#include <string>

namespace vitprobe::cairo_output {

/// Draws on a white width x height ARGB surface and writes it as PNG to `file` atomically.
void write_png(const std::string& file, int width, int height, const std::function<void(cairo_t*)>& draw);

/// Draws on an SVG surface of width x height user units (px) and writes the document to `file` atomically.
void write_svg(const std::string& file, int width, int height, const std::function<void(cairo_t*)>& draw);

/// Text style: size in px, bold or regular, of the sans-serif face.
struct Font {
  double size = 12;
  bool bold = false;
};

/// Selects `font` on `cr`.
void set_font(cairo_t* cr, const Font& font);

/// Width in px of `text` in `font` (measured on a scratch surface, so usable before drawing).
double text_width(const std::string& text, const Font& font);

/// Draws `text` with its anchor at (x, y): align 0 = left, 0.5 = centre, 1 = right; y is the middle of
/// the text's cap height (so labels sit centred on ticks).
void draw_text(cairo_t* cr, const std::string& text, const Font& font, double x, double y, double align);

/// The same rotated 90 degrees counter-clockwise (vertical axis labels), centred at (x, y).
void draw_vertical_text(cairo_t* cr, const std::string& text, const Font& font, double x, double y);

/// `text` cut with an ellipsis to fit `max_width` px.
std::string fit_text(const std::string& text, const Font& font, double max_width);

}  // namespace vitprobe::cairo_output
