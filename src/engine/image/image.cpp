#include "image/image.h"

// jpeglib.h needs FILE and size_t declared before it is included.
#include <cstddef>
#include <cstdio>
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <png.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstring>

#include "common/errors.h"
#include "common/limits.h"
#include "io/input_file.h"

namespace vitprobe {
namespace {

[[noreturn]] void fail_decode(const std::string& file, const std::string& reason) {
  throw BadInput(file + ": cannot decode image: " + reason);
}

// An image file holds at most its pixels uncompressed plus headers; anything larger is not an image
// we would decode, and reading it whole would only waste memory.
std::vector<uint8_t> read_image_file(const std::string& file) {
  return read_regular_file(file, 3 * max_image_pixels() + kMiB, "image file");
}

// Why an image of width x height cannot be decoded, or "" when it can: checked from the header, before
// any pixel memory is allocated.
std::string dimension_problem(long long width, long long height) {
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  if (width <= 0 || height <= 0) return "zero-size image (" + size + ")";
  if (width > kMaxImageSide || height > kMaxImageSide) {
    return "dimensions " + size + " exceed the limit of " + std::to_string(kMaxImageSide) + " per side";
  }
  const uint64_t limit = max_image_pixels();
  const auto pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  if (pixels > limit) {
    return "dimensions " + size + " = " + std::to_string(pixels) + " pixels exceed the limit of " +
           std::to_string(limit) + " (set " + kMaxImagePixelsVariable + " to raise it)";
  }
  return "";
}

// dimension_problem for the decoders that return through setjmp: no C++ object outlives this call, so
// a later longjmp skips no destructor. Returns false with the reason in `message`.
bool dimensions_fit(long long width, long long height, char* message, size_t message_size) {
  const std::string problem = dimension_problem(width, height);
  std::snprintf(message, message_size, "%s", problem.c_str());
  return problem.empty();
}

void check_dimensions(const std::string& file, long long width, long long height) {
  const std::string problem = dimension_problem(width, height);
  if (!problem.empty()) fail_decode(file, problem);
}

// ---------------------------------------------------------------------------------------------------
// JPEG. libjpeg reports fatal errors through a callback that must not return, so it jumps back with
// longjmp; the functions that call setjmp create no C++ objects after it, so nothing is skipped.

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_jpeg_error(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

void on_jpeg_message(j_common_ptr cinfo, int level) {
  // At the end of the data, or at a marker in the middle of a scan ("premature end of data segment"),
  // libjpeg only warns and pads the image with grey; PIL refuses truncated files ("image file is
  // truncated"), so we do too: a few hundred bytes must not decode to gigabytes of grey. Other warnings
  // (extraneous bytes before a marker, common in camera files) PIL ignores silently, and so do we.
  const int code = cinfo->err->msg_code;
  if (level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER)) on_jpeg_error(cinfo);
}

struct JpegOutput {
  int width = 0, height = 0, components = 0;
  std::vector<uint8_t> samples;  // height x width x components, as libjpeg delivers them
};

// Destroys the decompressor however run_jpeg leaves; created before setjmp, so longjmp skips nothing.
struct JpegDecompressor {
  jpeg_decompress_struct cinfo;
  ~JpegDecompressor() { jpeg_destroy_decompress(&cinfo); }
};

// Runs libjpeg over `data`; returns false with `errors.message` set when the data is rejected.
bool run_jpeg(const std::vector<uint8_t>& data, JpegOutput& output, JpegErrorManager& errors) {
  JpegDecompressor decompressor{};
  jpeg_decompress_struct& cinfo = decompressor.cinfo;
  cinfo.err = jpeg_std_error(&errors.pub);
  errors.pub.error_exit = on_jpeg_error;
  errors.pub.emit_message = on_jpeg_message;
  // Set before jpeg_create_decompress, which can fail too; destroying a zeroed struct is a no-op.
  if (setjmp(errors.jump)) return false;
  jpeg_create_decompress(&cinfo);

  jpeg_mem_src(&cinfo, data.data(), static_cast<unsigned long>(data.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (!dimensions_fit(cinfo.image_width, cinfo.image_height, errors.message, sizeof errors.message)) return false;
  // PIL picks its mode from the number of components (L, RGB, CMYK) and asks libjpeg for exactly
  // that colour space.
  switch (cinfo.num_components) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: cinfo.out_color_space = JCS_RGB; break;
    case 4: cinfo.out_color_space = JCS_CMYK; break;
    default:
      std::snprintf(errors.message, sizeof errors.message, "unsupported number of components %d",
                    cinfo.num_components);
      return false;
  }
  // PIL's defaults outside draft mode; a different IDCT or chroma upsampling changes pixel values.
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);

  output.width = static_cast<int>(cinfo.output_width);
  output.height = static_cast<int>(cinfo.output_height);
  output.components = cinfo.output_components;
  const size_t row_bytes = static_cast<size_t>(output.width) * output.components;
  output.samples.resize(row_bytes * output.height);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = output.samples.data() + row_bytes * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  // jpeg_finish_decompress is skipped on purpose: it would read past the last scan, and PIL accepts
  // files whose image data is complete even when the trailing marker is missing.
  return true;
}

// PIL's CMYK -> RGB: each channel is (255 - ink) scaled by (255 - black), with its rounded /255.
uint8_t cmyk_channel_to_rgb(int ink, int black) {
  const int white = 255 - black;
  const int product = ink * white + 128;
  const int scaled = ((product >> 8) + product) >> 8;
  return static_cast<uint8_t>(std::clamp(white - scaled, 0, 255));
}

ImageU8 decode_jpeg(const std::string& file, const std::vector<uint8_t>& data) {
  JpegOutput output;
  JpegErrorManager errors{};
  if (!run_jpeg(data, output, errors)) fail_decode(file, std::string("JPEG: ") + errors.message);
  check_dimensions(file, output.width, output.height);

  ImageU8 image;
  image.width = output.width;
  image.height = output.height;
  if (output.components == 3) {
    image.pixels = std::move(output.samples);
    return image;
  }
  const size_t n_pixels = static_cast<size_t>(image.width) * image.height;
  image.pixels.resize(n_pixels * 3);
  const uint8_t* in = output.samples.data();
  uint8_t* out = image.pixels.data();
  if (output.components == 1) {
    for (size_t i = 0; i < n_pixels; ++i) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[i];
  } else {
    // PIL always reads 4-component JPEGs with Adobe polarity (inverted ink), whatever the markers say.
    for (size_t i = 0; i < n_pixels; ++i) {
      const int black = 255 - in[4 * i + 3];
      for (int c = 0; c < 3; ++c) out[3 * i + c] = cmyk_channel_to_rgb(255 - in[4 * i + c], black);
    }
  }
  return image;
}

// ---------------------------------------------------------------------------------------------------
// PNG. libpng reports fatal errors the same way as libjpeg, through png_longjmp.

struct PngReader {
  const std::vector<uint8_t>* data = nullptr;
  size_t offset = 0;
  char message[256] = {};
  int width = 0, height = 0, channels = 0, bit_depth = 0;
  std::vector<uint8_t> samples;
  std::vector<png_bytep> rows;
};

void on_png_error(png_structp png, png_const_charp message) {
  auto* reader = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(reader->message, sizeof reader->message, "%s", message);
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

void on_png_read(png_structp png, png_bytep out, png_size_t size) {
  auto* reader = static_cast<PngReader*>(png_get_io_ptr(png));
  if (size > reader->data->size() - reader->offset) png_error(png, "file is truncated");
  std::memcpy(out, reader->data->data() + reader->offset, size);
  reader->offset += size;
}

// The pixel limit, and the most pixel data the rest of the file could inflate to (deflate stores at most
// 1032 bytes per byte), both checked from the header before any row is allocated.
bool png_header_fits(PngReader& reader, png_structp png, png_infop info) {
  const png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  if (!dimensions_fit(width, height, reader.message, sizeof reader.message)) return false;
  const uint64_t raw_bytes = (uint64_t{png_get_rowbytes(png, info)} + 1) * height;
  if (raw_bytes / 1032 > reader.data->size() - reader.offset) {
    std::snprintf(reader.message, sizeof reader.message,
                  "header says %ux%u but the file is far too small to hold it (truncated)", width, height);
    return false;
  }
  return true;
}

struct PngDecompressor {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngDecompressor() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

// Runs libpng over `reader.data`; returns false with `reader.message` set when the data is rejected.
bool run_png(PngReader& reader) {
  PngDecompressor decompressor;
  decompressor.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_png_error, on_png_warning);
  if (decompressor.png) decompressor.info = png_create_info_struct(decompressor.png);
  if (!decompressor.png || !decompressor.info) {
    std::snprintf(reader.message, sizeof reader.message, "out of memory");
    return false;
  }
  png_structp png = decompressor.png;
  png_infop info = decompressor.info;
  if (setjmp(png_jmpbuf(png))) return false;

  png_set_read_fn(png, &reader, on_png_read);
  png_set_user_limits(png, kMaxImageSide, kMaxImageSide);
  png_read_info(png, info);
  if (!png_header_fits(reader, png, info)) return false;
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  // PIL opens 16-bit greyscale as mode "I" and convert('RGB') clips it to 255, while every other
  // 16-bit layout keeps the most significant byte; keep the 16 bits here to reproduce the clip.
  const bool gray16 = bit_depth == 16 && color_type == PNG_COLOR_TYPE_GRAY;
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16 && !gray16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  reader.width = static_cast<int>(png_get_image_width(png, info));
  reader.height = static_cast<int>(png_get_image_height(png, info));
  reader.channels = png_get_channels(png, info);
  reader.bit_depth = png_get_bit_depth(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  reader.samples.resize(row_bytes * reader.height);
  reader.rows.resize(reader.height);
  for (int y = 0; y < reader.height; ++y) reader.rows[y] = reader.samples.data() + row_bytes * y;
  png_read_image(png, reader.rows.data());
  return true;
}

ImageU8 decode_png(const std::string& file, const std::vector<uint8_t>& data) {
  PngReader reader;
  reader.data = &data;
  if (!run_png(reader)) fail_decode(file, std::string("PNG: ") + reader.message);
  check_dimensions(file, reader.width, reader.height);

  ImageU8 image;
  image.width = reader.width;
  image.height = reader.height;
  const size_t n_pixels = static_cast<size_t>(image.width) * image.height;
  image.pixels.resize(n_pixels * 3);
  const uint8_t* in = reader.samples.data();
  uint8_t* out = image.pixels.data();
  const int channels = reader.channels;
  for (size_t i = 0; i < n_pixels; ++i) {
    if (reader.bit_depth == 16) {  // greyscale only, see run_png
      const int value = (in[2 * i] << 8) | in[2 * i + 1];
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = static_cast<uint8_t>(std::min(value, 255));
    } else if (channels <= 2) {  // grey, or grey + alpha: alpha is dropped like convert('RGB')
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[channels * i];
    } else {  // RGB or RGBA
      for (int c = 0; c < 3; ++c) out[3 * i + c] = in[channels * i + c];
    }
  }
  return image;
}

// ---------------------------------------------------------------------------------------------------
// Netpbm: P2/P5 (grey) and P3/P6 (RGB) with maxval up to 255.

class PnmParser {
 public:
  PnmParser(const std::string& file, const std::vector<uint8_t>& data) : file_(file), data_(data) {}

  ImageU8 parse() {
    const char kind = static_cast<char>(data_[1]);
    const bool plain = kind == '2' || kind == '3';
    const int channels = (kind == '2' || kind == '5') ? 1 : 3;
    offset_ = 2;
    const long long width = read_number("width");
    const long long height = read_number("height");
    const long long maxval = read_number("maxval");
    check_dimensions(file_, width, height);
    if (maxval < 1 || maxval > 255) {
      fail_decode(file_, "PNM: maxval " + std::to_string(maxval) + " is not in 1..255");
    }
    const size_t n_pixels = static_cast<size_t>(width) * height;
    // The data must be there before the pixels are allocated: binary samples take a byte each, plain
    // ones at least a digit and a separator.
    if (!plain) {
      // Exactly one whitespace byte separates the header from binary samples.
      if (offset_ >= data_.size() || !std::isspace(data_[offset_])) fail_decode(file_, "PNM: malformed header");
      ++offset_;
    }
    const size_t min_bytes = plain ? 2 * n_pixels * channels - 1 : n_pixels * channels;
    if (data_.size() - std::min(offset_, data_.size()) < min_bytes) fail_decode(file_, "PNM: file is truncated");
    ImageU8 image;
    image.width = static_cast<int>(width);
    image.height = static_cast<int>(height);
    image.pixels.resize(n_pixels * 3);
    for (size_t i = 0; i < n_pixels; ++i) {
      for (int c = 0; c < channels; ++c) {
        const long long sample = plain ? read_number("sample") : data_[offset_++];
        if (plain && sample > maxval) fail_decode(file_, "PNM: sample exceeds maxval");
        const uint8_t value = scale_sample(sample, maxval);
        if (channels == 1) {
          image.pixels[3 * i] = image.pixels[3 * i + 1] = image.pixels[3 * i + 2] = value;
        } else {
          image.pixels[3 * i + c] = value;
        }
      }
    }
    return image;
  }

 private:
  // PIL rescales to 0..255 with Python's round (half to even) and clips samples above maxval.
  static uint8_t scale_sample(long long sample, long long maxval) {
    if (maxval == 255) return static_cast<uint8_t>(sample);
    const double scaled = std::nearbyint(static_cast<double>(sample) / static_cast<double>(maxval) * 255.0);
    return static_cast<uint8_t>(std::min(scaled, 255.0));
  }

  void skip_whitespace_and_comments() {
    while (offset_ < data_.size()) {
      if (data_[offset_] == '#') {
        while (offset_ < data_.size() && data_[offset_] != '\n' && data_[offset_] != '\r') ++offset_;
      } else if (std::isspace(data_[offset_])) {
        ++offset_;
      } else {
        return;
      }
    }
  }

  long long read_number(const char* what) {
    skip_whitespace_and_comments();
    long long value = 0;
    size_t digits = 0;
    while (offset_ < data_.size() && std::isdigit(data_[offset_])) {
      if (++digits > 9) fail_decode(file_, std::string("PNM: ") + what + " is too large");
      value = value * 10 + (data_[offset_++] - '0');
    }
    if (digits == 0 && offset_ >= data_.size()) fail_decode(file_, "PNM: file is truncated");
    if (digits == 0) fail_decode(file_, std::string("PNM: malformed ") + what);
    return value;
  }

  const std::string& file_;
  const std::vector<uint8_t>& data_;
  size_t offset_ = 0;
};

bool starts_with(const std::vector<uint8_t>& data, const char* magic, size_t length) {
  return data.size() >= length && std::memcmp(data.data(), magic, length) == 0;
}

}  // namespace

void check_image(const ImageU8& image, const std::string& where) {
  if (image.width <= 0 || image.height <= 0) {
    throw BadInput(where + ": image is empty (" + std::to_string(image.width) + "x" +
                   std::to_string(image.height) + ")");
  }
  if (image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3) {
    throw BadInput(where + ": image buffer holds " + std::to_string(image.pixels.size()) + " bytes, not " +
                   std::to_string(image.width) + "x" + std::to_string(image.height) + "x3");
  }
}

ImageU8 decode_image(const std::string& file) {
  const std::vector<uint8_t> data = read_image_file(file);
  if (data.empty()) fail_decode(file, "empty file");
  if (starts_with(data, "\xFF\xD8\xFF", 3)) return decode_jpeg(file, data);
  if (starts_with(data, "\x89PNG\r\n\x1A\n", 8)) return decode_png(file, data);
  if (data.size() >= 2 && data[0] == 'P' && (data[1] == '2' || data[1] == '3' || data[1] == '5' || data[1] == '6')) {
    return PnmParser(file, data).parse();
  }
  fail_decode(file, "unknown format (not JPEG, PNG or PPM/PGM)");
}

}  // namespace vitprobe
