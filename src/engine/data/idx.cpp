// MNIST and Fashion-MNIST in their distribution format, IDX (http://yann.lecun.com/exdb/mnist/): a
// big-endian header (two zero bytes, a type code, the number of dimensions, one uint32 per dimension) then
// the data. Images are IDX3 unsigned bytes (n, rows, cols), labels IDX1 unsigned bytes (n).
#include <cstdio>
#include <filesystem>

#include "common/errors.h"
#include "common/limits.h"
#include "data/file_bytes.h"
#include "data/packed_dataset.h"

namespace vitprobe {
namespace {

constexpr uint8_t kUnsignedByteType = 0x08;

const std::vector<std::string> kFashionMnistClasses = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                       "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
const std::vector<std::string> kMnistClasses = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

uint32_t read_big_endian(const std::vector<uint8_t>& bytes, size_t offset) {
  return (uint32_t{bytes[offset]} << 24) | (uint32_t{bytes[offset + 1]} << 16) | (uint32_t{bytes[offset + 2]} << 8) |
         uint32_t{bytes[offset + 3]};
}

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08X", value);
  return text;
}

// Reads an IDX file of unsigned bytes with `n_dims` dimensions: the header first, checked against the
// dataset file limit, then exactly the data it declares (a longer body is refused without reading it all, so
// a gzip bomb behind a small header is never inflated). Returns the dimensions; `data` gets the body.
std::vector<uint32_t> read_idx(const std::string& file, int n_dims, std::vector<uint8_t>& data) {
  const uint32_t expected_magic = (uint32_t{kUnsignedByteType} << 8) | static_cast<uint32_t>(n_dims);
  const size_t header_bytes = 4 + 4 * static_cast<size_t>(n_dims);
  const std::vector<uint8_t> header = read_file_head(file, header_bytes);
  if (header.size() < 4) {
    throw BadInput(file + ": too short for an IDX header (" + std::to_string(header.size()) + " bytes)");
  }
  const uint32_t magic = read_big_endian(header, 0);
  if (magic != expected_magic) {
    throw BadInput(file + ": IDX magic " + hex32(magic) + ", expected " + hex32(expected_magic) + " (unsigned bytes, " +
                   std::to_string(n_dims) + " dimension" + (n_dims > 1 ? "s" : "") + ")");
  }
  if (header.size() < header_bytes) throw BadInput(file + ": IDX header is truncated");
  std::vector<uint32_t> dims;
  uint64_t expected_data = 1;  // at most (2^32 - 1)^3: no overflow
  std::string shape;
  for (int d = 0; d < n_dims; ++d) {
    dims.push_back(read_big_endian(header, 4 + 4 * static_cast<size_t>(d)));
    expected_data *= dims.back();
    shape += (d ? "x" : "") + std::to_string(dims.back());
  }
  if (expected_data > kMaxDatasetFileBytes) {
    throw BadInput(file + ": IDX header says " + shape + " = " + std::to_string(expected_data) +
                   " bytes of data, over the limit of " + byte_count(kMaxDatasetFileBytes));
  }
  const uint64_t expected_file = header_bytes + expected_data;
  data = read_file_bytes(file, expected_file,
                         "the " + std::to_string(expected_data) + " bytes of data its IDX header declares (" + shape + ")");
  const uint64_t data_bytes = data.size() - header_bytes;
  if (data_bytes != expected_data) {
    throw BadInput(file + ": IDX header says " + shape + " = " + std::to_string(expected_data) +
                   " bytes of data but the file holds " + std::to_string(data_bytes) + " (truncated)");
  }
  data.erase(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(header_bytes));
  return dims;
}

// The file of one IDX array: the names of the original download (gzip or not), and the dotted names of
// some mirrors, in DIR or DIR/raw (torchvision's layout).
std::string find_idx_file(const std::string& dir, const std::string& prefix, const std::string& kind) {
  const std::string dashed = prefix + "-" + kind;
  const std::string dotted = prefix + "-" + kind.substr(0, kind.find('-')) + "." + kind.substr(kind.find('-') + 1);
  const std::vector<std::string> names = {dashed + ".gz", dashed, dotted + ".gz", dotted};
  const std::string found = find_first_file({dir, (std::filesystem::path(dir) / "raw").string()}, names);
  if (found.empty()) {
    if (!std::filesystem::is_directory(dir)) throw IoError(dir + ": no such folder");
    throw IoError(dir + ": no " + dashed + "[.gz] (looked in " + dir + " and " + dir + "/raw)");
  }
  return found;
}

}  // namespace

PackedDatasetParts read_idx_dataset(const std::string& dir, bool val, bool fashion) {
  const std::string prefix = val ? "t10k" : "train";
  const std::string images_file = find_idx_file(dir, prefix, "images-idx3-ubyte");
  const std::string labels_file = find_idx_file(dir, prefix, "labels-idx1-ubyte");

  PackedDatasetParts parts;
  parts.format = fashion ? "fashion-mnist" : "mnist";
  parts.root = dir;
  parts.split = val ? "val" : "train";
  parts.class_names = fashion ? kFashionMnistClasses : kMnistClasses;

  std::vector<uint8_t> images;
  const auto image_dims = read_idx(images_file, 3, images);
  if (image_dims[1] == 0 || image_dims[2] == 0) throw BadInput(images_file + ": IDX images have a zero side");
  std::vector<uint8_t> labels;
  const auto label_dims = read_idx(labels_file, 1, labels);
  if (label_dims[0] != image_dims[0]) {
    throw BadInput(images_file + " holds " + std::to_string(image_dims[0]) + " images but " + labels_file + " holds " +
                   std::to_string(label_dims[0]) + " labels");
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= parts.class_names.size()) {
      throw BadInput(labels_file + ": label " + std::to_string(labels[i]) + " of item " + std::to_string(i) +
                     " is not in 0.." + std::to_string(parts.class_names.size() - 1));
    }
  }
  parts.images.height = static_cast<int>(image_dims[1]);
  parts.images.width = static_cast<int>(image_dims[2]);
  parts.images.layout = PixelLayout::Gray;
  parts.images.bytes = std::move(images);
  parts.labels = std::move(labels);
  parts.sources = {{images_file, 0}};
  return parts;
}

}  // namespace vitprobe
