// The binary versions of CIFAR-10, CIFAR-100 (https://www.cs.toronto.edu/~kriz/cifar.html) and STL-10
// (https://cs.stanford.edu/~acoates/stl10/).
//   CIFAR-10:  data_batch_{1..5}.bin / test_batch.bin; records of <label byte><3072 pixel bytes>.
//   CIFAR-100: train.bin / test.bin; records of <coarse label><fine label><3072 pixel bytes>.
//   Pixels: 32x32 red plane, then green, then blue, each row-major.
//   STL-10:    {train,test}_X.bin (3 planes of 96x96 per image, column-major), {train,test}_y.bin (labels 1..10).
#include <filesystem>

#include "common/errors.h"
#include "common/limits.h"
#include "data/file_bytes.h"
#include "data/packed_dataset.h"

namespace vitprobe {
namespace {

const std::vector<std::string> kCifar10Classes = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                  "dog",      "frog",       "horse", "ship", "truck"};
const std::vector<std::string> kStl10Classes = {"airplane", "bird",   "car",    "cat",  "deer",
                                                "dog",      "horse",  "monkey", "ship", "truck"};

// DIR itself, or its sub-folder named like the extracted archive when that exists.
std::string data_folder(const std::string& dir, const std::string& archive_folder) {
  if (!std::filesystem::is_directory(dir)) throw IoError(dir + ": no such folder");
  const auto nested = std::filesystem::path(dir) / archive_folder;
  return std::filesystem::is_directory(nested) ? nested.string() : dir;
}

std::string require_file(const std::string& folder, const std::string& name) {
  const std::string path = (std::filesystem::path(folder) / name).string();
  if (!std::filesystem::is_regular_file(path)) throw IoError(path + ": missing");
  return path;
}

// Class names from the archive's text file when present (checked against the expected count), else `fallback`.
std::vector<std::string> class_names_from(const std::string& folder, const std::string& name, size_t count,
                                          const std::vector<std::string>& fallback) {
  const std::string path = (std::filesystem::path(folder) / name).string();
  if (!std::filesystem::is_regular_file(path)) {
    if (fallback.size() == count) return fallback;
    std::vector<std::string> numbered;
    for (size_t i = 0; i < count; ++i) numbered.push_back(std::to_string(i));
    return numbered;
  }
  auto names = read_text_lines(path);
  if (names.size() != count) {
    throw BadInput(path + ": " + std::to_string(names.size()) + " class names, expected " + std::to_string(count));
  }
  return names;
}

}  // namespace

PackedDatasetParts read_cifar_dataset(const std::string& dir, bool val, int num_classes) {
  const bool hundred = num_classes == 100;
  const std::string folder = data_folder(dir, hundred ? "cifar-100-binary" : "cifar-10-batches-bin");
  std::vector<std::string> files;
  if (hundred) {
    files = {require_file(folder, val ? "test.bin" : "train.bin")};
  } else if (val) {
    files = {require_file(folder, "test_batch.bin")};
  } else {
    for (int batch = 1; batch <= 5; ++batch) {
      files.push_back(require_file(folder, "data_batch_" + std::to_string(batch) + ".bin"));
    }
  }

  PackedDatasetParts parts;
  parts.format = hundred ? "cifar100" : "cifar10";
  parts.root = dir;
  parts.split = val ? "val" : "train";
  parts.class_names = hundred ? class_names_from(folder, "fine_label_names.txt", 100, {})
                              : class_names_from(folder, "batches.meta.txt", 10, kCifar10Classes);
  parts.images.width = parts.images.height = 32;
  parts.images.layout = PixelLayout::PlanarRows;
  const size_t pixel_bytes = parts.images.item_bytes();
  const size_t label_bytes = hundred ? 2 : 1;
  const size_t record_bytes = label_bytes + pixel_bytes;
  for (const auto& file : files) {
    const std::vector<uint8_t> bytes =
        read_file_bytes(file, kMaxCifarRecordsPerFile * record_bytes,
                        "the limit of " + std::to_string(kMaxCifarRecordsPerFile) + " records of " +
                            std::to_string(record_bytes) + " bytes");
    if (bytes.empty() || bytes.size() % record_bytes != 0) {
      throw BadInput(file + ": " + std::to_string(bytes.size()) + " bytes is not a whole number of " +
                     std::to_string(record_bytes) + "-byte records (truncated or not a " + parts.format +
                     " binary batch)");
    }
    parts.sources.push_back({file, static_cast<int64_t>(parts.labels.size())});
    const size_t n_records = bytes.size() / record_bytes;
    parts.images.bytes.reserve(parts.images.bytes.size() + n_records * pixel_bytes);
    for (size_t record = 0; record < n_records; ++record) {
      const uint8_t* start = bytes.data() + record * record_bytes;
      const uint8_t label = start[label_bytes - 1];  // CIFAR-100: the fine label follows the coarse one
      if (label >= num_classes) {
        throw BadInput(file + " record " + std::to_string(record) + ": label " + std::to_string(label) +
                       " is not in 0.." + std::to_string(num_classes - 1));
      }
      parts.labels.push_back(label);
      parts.images.bytes.insert(parts.images.bytes.end(), start + label_bytes, start + record_bytes);
    }
  }
  return parts;
}

PackedDatasetParts read_stl10_dataset(const std::string& dir, bool val) {
  const std::string folder = data_folder(dir, "stl10_binary");
  const std::string prefix = val ? "test" : "train";
  const std::string images_file = require_file(folder, prefix + "_X.bin");
  const std::string labels_file = require_file(folder, prefix + "_y.bin");

  PackedDatasetParts parts;
  parts.format = "stl10";
  parts.root = dir;
  parts.split = val ? "val" : "train";
  parts.class_names = class_names_from(folder, "class_names.txt", 10, kStl10Classes);
  parts.images.width = parts.images.height = 96;
  parts.images.layout = PixelLayout::PlanarColumns;
  parts.images.bytes = read_file_bytes(images_file);
  const size_t image_bytes = parts.images.item_bytes();
  if (parts.images.bytes.empty() || parts.images.bytes.size() % image_bytes != 0) {
    throw BadInput(images_file + ": " + std::to_string(parts.images.bytes.size()) + " bytes is not a whole number of " +
                   std::to_string(image_bytes) + "-byte 96x96x3 images (truncated?)");
  }
  // One label byte per image: a much longer file is refused without reading it all (one extra byte is
  // read so that a near miss gets the count message below).
  const std::vector<uint8_t> labels =
      read_file_bytes(labels_file, static_cast<uint64_t>(parts.images.count()) + 1,
                      "one label for each of the " + std::to_string(parts.images.count()) + " images of " + images_file);
  if (static_cast<int64_t>(labels.size()) != parts.images.count()) {
    throw BadInput(images_file + " holds " + std::to_string(parts.images.count()) + " images but " + labels_file +
                   " holds " + std::to_string(labels.size()) + " labels (truncated?)");
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    // STL-10 numbers its classes from 1.
    if (labels[i] < 1 || labels[i] > 10) {
      throw BadInput(labels_file + ": label " + std::to_string(labels[i]) + " of item " + std::to_string(i) +
                     " is not in 1..10");
    }
    parts.labels.push_back(static_cast<uint8_t>(labels[i] - 1));
  }
  parts.sources = {{images_file, 0}};
  return parts;
}

}  // namespace vitprobe
