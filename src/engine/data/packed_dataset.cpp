#include "data/packed_dataset.h"

#include <algorithm>

#include "common/errors.h"

namespace vitprobe {
namespace {

// "FILE record K" for item `index`: the last source whose first item is <= index holds it.
std::string packed_item_name(const PackedDatasetParts& parts, int64_t index) {
  auto source = std::upper_bound(parts.sources.begin(), parts.sources.end(), index,
                                 [](int64_t value, const SourceFile& file) { return value < file.first_item; });
  if (source == parts.sources.begin()) return parts.format + " item " + std::to_string(index);
  --source;
  return source->path + " record " + std::to_string(index - source->first_item);
}

class PackedDataset : public Dataset {
 public:
  explicit PackedDataset(PackedDatasetParts parts) : parts_(std::move(parts)) {}

  int64_t size() const override { return parts_.images.count(); }
  const std::vector<std::string>& class_names() const override { return parts_.class_names; }
  int64_t label(int64_t index) const override { return parts_.labels.at(static_cast<size_t>(index)); }
  ImageU8 load(int64_t index) const override { return parts_.images.image(index); }

  std::string item_name(int64_t index) const override { return packed_item_name(parts_, index); }

  std::string format() const override { return parts_.format; }
  std::string describe() const override { return parts_.format + ":" + parts_.root + " (" + parts_.split + ")"; }
  std::optional<std::pair<int, int>> image_size() const override {
    return std::make_pair(parts_.images.width, parts_.images.height);
  }

 private:
  PackedDatasetParts parts_;
};

}  // namespace

ImageU8 PackedImages::image(int64_t index) const {
  if (index < 0 || index >= count()) {
    throw BadInput("item " + std::to_string(index) + " is out of range (0.." + std::to_string(count() - 1) + ")");
  }
  ImageU8 image;
  image.width = width;
  image.height = height;
  const size_t n_pixels = static_cast<size_t>(width) * height;
  image.pixels.resize(n_pixels * 3);
  const uint8_t* in = bytes.data() + item_bytes() * static_cast<size_t>(index);
  uint8_t* out = image.pixels.data();
  switch (layout) {
    case PixelLayout::Gray:
      for (size_t i = 0; i < n_pixels; ++i) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[i];
      break;
    case PixelLayout::PlanarRows:
      for (int c = 0; c < 3; ++c) {
        for (size_t i = 0; i < n_pixels; ++i) out[3 * i + c] = in[c * n_pixels + i];
      }
      break;
    case PixelLayout::PlanarColumns:
      // STL-10 stores each plane transposed (torchvision transposes it back with np.transpose(0, 1, 3, 2)).
      for (int c = 0; c < 3; ++c) {
        for (int y = 0; y < height; ++y) {
          for (int x = 0; x < width; ++x) {
            out[(static_cast<size_t>(y) * width + x) * 3 + c] = in[c * n_pixels + static_cast<size_t>(x) * height + y];
          }
        }
      }
      break;
  }
  return image;
}

std::unique_ptr<Dataset> make_packed_dataset(PackedDatasetParts parts) {
  const int64_t n_images = parts.images.count();
  if (static_cast<int64_t>(parts.labels.size()) != n_images) {
    throw BadInput(parts.root + ": " + std::to_string(n_images) + " images but " + std::to_string(parts.labels.size()) +
                   " labels");
  }
  const size_t n_classes = parts.class_names.size();
  for (size_t i = 0; i < parts.labels.size(); ++i) {
    if (parts.labels[i] >= n_classes) {
      throw BadInput(packed_item_name(parts, static_cast<int64_t>(i)) + ": label " + std::to_string(parts.labels[i]) +
                     " is not in 0.." + std::to_string(n_classes - 1));
    }
  }
  return std::make_unique<PackedDataset>(std::move(parts));
}

}  // namespace vitprobe
