#pragma once
// The in-memory datasets (IDX, CIFAR, STL-10): every image of the split is read once into one byte array
// in the file's own layout and converted to RGB when an item is loaded.
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace vitprobe {

/// How one item's bytes are laid out in PackedImages::bytes.
enum class PixelLayout {
  Gray,               // height x width, one byte per pixel (IDX)
  PlanarRows,         // 3 planes of height x width, row-major (CIFAR)
  PlanarColumns,      // 3 planes of width x height, column-major (STL-10)
};

/// Equal-size 8-bit images stored back to back.
struct PackedImages {
  int width = 0, height = 0;
  PixelLayout layout = PixelLayout::Gray;
  std::vector<uint8_t> bytes;

  /// Bytes of one item.
  size_t item_bytes() const {
    return static_cast<size_t>(width) * height * (layout == PixelLayout::Gray ? 1 : 3);
  }
  /// Number of items held.
  int64_t count() const { return item_bytes() ? static_cast<int64_t>(bytes.size() / item_bytes()) : 0; }
  /// Item `index` as RGB (grey replicated to three channels).
  ImageU8 image(int64_t index) const;
};

/// A file that contributed items first_item, first_item + 1, ... (for item_name).
struct SourceFile {
  std::string path;
  int64_t first_item = 0;
};

/// The parts of an in-memory dataset, filled by a format reader.
struct PackedDatasetParts {
  std::string format;
  std::string root;
  std::string split;
  PackedImages images;
  std::vector<uint8_t> labels;
  std::vector<std::string> class_names;
  std::vector<SourceFile> sources;
};

/// A Dataset over `parts`; throws BadInput when the label count differs from the image count or a label is
/// out of range (naming the file and item).
std::unique_ptr<Dataset> make_packed_dataset(PackedDatasetParts parts);

/// Reads IDX images and labels (Fashion-MNIST when fashion is true, else MNIST) of one split from `dir`.
PackedDatasetParts read_idx_dataset(const std::string& dir, bool val, bool fashion);

/// Reads the binary CIFAR-10 (num_classes 10) or CIFAR-100 (100, fine labels) split from `dir`.
PackedDatasetParts read_cifar_dataset(const std::string& dir, bool val, int num_classes);

/// Reads the binary STL-10 train or test split from `dir`.
PackedDatasetParts read_stl10_dataset(const std::string& dir, bool val);

/// Fashion-MNIST placed on a cluttered 64x64 canvas (see clutter.cpp), from the packed split `fashion`.
std::unique_ptr<Dataset> make_clutter_dataset(PackedDatasetParts fashion, uint64_t seed);

/// ImageFolder over DIR/train or DIR/val.
std::unique_ptr<Dataset> open_image_folder(const std::string& dir, bool val);

}  // namespace vitprobe
