#include "report/cairo_output.h"

#include <cairo-svg.h>

#include <cmath>
#include <memory>
#include <ostream>

#include "common/errors.h"
#include "io/atomic_file.h"

namespace vitprobe::cairo_output {
namespace {

constexpr const char* kFontFace = "DejaVu Sans";

cairo_status_t write_to_stream(void* closure, const unsigned char* data, unsigned int length) {
  auto* stream = static_cast<std::ostream*>(closure);
  stream->write(reinterpret_cast<const char*>(data), length);
  return stream->good() ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

void check_status(cairo_status_t status, const std::string& file, const char* what) {
  if (status != CAIRO_STATUS_SUCCESS) {
    throw IoError(file + ": cannot " + what + " (cairo: " + cairo_status_to_string(status) + ")");
  }
}

struct SurfaceDeleter {
  void operator()(cairo_surface_t* surface) const { cairo_surface_destroy(surface); }
};
struct ContextDeleter {
  void operator()(cairo_t* cr) const { cairo_destroy(cr); }
};
using SurfacePtr = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using ContextPtr = std::unique_ptr<cairo_t, ContextDeleter>;

void check_size(const std::string& file, int width, int height) {
  if (width <= 0 || height <= 0 || width > 32767 || height > 32767) {
    throw BadInput(file + ": figure size " + std::to_string(width) + "x" + std::to_string(height) + " is out of range");
  }
}

}  // namespace

void write_png(const std::string& file, int width, int height, const std::function<void(cairo_t*)>& draw) {
  check_size(file, width, height);
  SurfacePtr surface(cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height));
  check_status(cairo_surface_status(surface.get()), file, "create an image surface");
  {
    ContextPtr cr(cairo_create(surface.get()));
    cairo_set_source_rgb(cr.get(), 1, 1, 1);
    cairo_paint(cr.get());
    draw(cr.get());
    check_status(cairo_status(cr.get()), file, "draw the figure");
  }
  cairo_surface_flush(surface.get());
  write_file_atomically(file, [&](std::ostream& stream) {
    check_status(cairo_surface_write_to_png_stream(surface.get(), write_to_stream, &stream), file, "write PNG");
  });
}

void write_svg(const std::string& file, int width, int height, const std::function<void(cairo_t*)>& draw) {
  check_size(file, width, height);
  write_file_atomically(file, [&](std::ostream& stream) {
    SurfacePtr surface(cairo_svg_surface_create_for_stream(write_to_stream, &stream, width, height));
    check_status(cairo_surface_status(surface.get()), file, "create an SVG surface");
    // Plain user units: width="W" height="H", the same numbers as the PNG's pixels.
    cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_USER);
    {
      ContextPtr cr(cairo_create(surface.get()));
      cairo_set_source_rgb(cr.get(), 1, 1, 1);
      cairo_paint(cr.get());
      draw(cr.get());
      check_status(cairo_status(cr.get()), file, "draw the figure");
    }
    cairo_surface_finish(surface.get());
    check_status(cairo_surface_status(surface.get()), file, "write SVG");
  });
}

void set_font(cairo_t* cr, const Font& font) {
  cairo_select_font_face(cr, kFontFace, CAIRO_FONT_SLANT_NORMAL,
                         font.bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, font.size);
}

double text_width(const std::string& text, const Font& font) {
  static thread_local SurfacePtr scratch(cairo_image_surface_create(CAIRO_FORMAT_A8, 1, 1));
  ContextPtr cr(cairo_create(scratch.get()));
  set_font(cr.get(), font);
  cairo_text_extents_t extents;
  cairo_text_extents(cr.get(), text.c_str(), &extents);
  return extents.x_advance;
}

void draw_text(cairo_t* cr, const std::string& text, const Font& font, double x, double y, double align) {
  set_font(cr, font);
  cairo_text_extents_t extents;
  cairo_text_extents(cr, text.c_str(), &extents);
  // 0.36 em is about half the cap height of DejaVu Sans: the text's visual middle lands on y.
  cairo_move_to(cr, x - align * extents.x_advance, y + 0.36 * font.size);
  cairo_show_text(cr, text.c_str());
}

void draw_vertical_text(cairo_t* cr, const std::string& text, const Font& font, double x, double y) {
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, -M_PI / 2);
  draw_text(cr, text, font, 0, 0, 0.5);
  cairo_restore(cr);
}

std::string fit_text(const std::string& text, const Font& font, double max_width) {
  if (text_width(text, font) <= max_width) return text;
  std::string cut = text;
  while (!cut.empty() && text_width(cut + "...", font) > max_width) {
    cut.pop_back();
    // Never leave half of a UTF-8 sequence behind.
    while (!cut.empty() && (static_cast<unsigned char>(cut.back()) & 0xC0) == 0x80) cut.pop_back();
    if (!cut.empty() && (static_cast<unsigned char>(cut.back()) & 0xC0) == 0xC0) cut.pop_back();
  }
  return cut + "...";
}

}  // namespace vitprobe::cairo_output
