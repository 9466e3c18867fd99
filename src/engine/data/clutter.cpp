// fmnist-clutter: the "cluttered MNIST" construction (Mnih et al., "Recurrent Models of Visual Attention",
// NeurIPS 2014, section 4.1) on Fashion-MNIST. Each item is its Fashion-MNIST image placed at a random
// position on a black 64x64 canvas, over 4 to 8 random 8x8 fragments cut from other items of the same split
// at random positions. Layers combine by per-pixel maximum, so the item itself is never overwritten. Labels are
// the item's. Every choice comes from a generator seeded with (seed, item), so an item is the same whatever
// the thread, the order of loading or --limit.
#include <algorithm>

#include "common/errors.h"
#include "data/packed_dataset.h"
#include "data/random.h"

namespace vitprobe {
namespace {

constexpr int kCanvasSide = 64;
constexpr int kFragmentSide = 8;
constexpr int kMinFragments = 4;
constexpr int kMaxFragments = 8;

class ClutterDataset : public Dataset {
 public:
  ClutterDataset(PackedDatasetParts fashion, uint64_t seed) : fashion_(std::move(fashion)), seed_(seed) {
    if (fashion_.images.layout != PixelLayout::Gray || fashion_.images.width > kCanvasSide ||
        fashion_.images.height > kCanvasSide || fashion_.images.width < kFragmentSide ||
        fashion_.images.height < kFragmentSide) {
      throw BadInput(fashion_.root + ": fmnist-clutter needs grey items between 8x8 and 64x64");
    }
    if (fashion_.images.count() < 2) throw BadInput(fashion_.root + ": fmnist-clutter needs at least 2 items");
  }

  int64_t size() const override { return fashion_.images.count(); }
  const std::vector<std::string>& class_names() const override { return fashion_.class_names; }
  int64_t label(int64_t index) const override { return fashion_.labels.at(static_cast<size_t>(index)); }

  ImageU8 load(int64_t index) const override {
    if (index < 0 || index >= size()) {
      throw BadInput("fmnist-clutter: item " + std::to_string(index) + " is out of range");
    }
    const PackedImages& items = fashion_.images;
    std::vector<uint8_t> canvas(static_cast<size_t>(kCanvasSide) * kCanvasSide, 0);
    auto paste = [&](int64_t source, int source_x, int source_y, int width, int height, int x, int y) {
      const uint8_t* pixels = items.bytes.data() + items.item_bytes() * static_cast<size_t>(source);
      for (int row = 0; row < height; ++row) {
        for (int column = 0; column < width; ++column) {
          uint8_t& out = canvas[static_cast<size_t>(y + row) * kCanvasSide + x + column];
          out = std::max(out, pixels[static_cast<size_t>(source_y + row) * items.width + source_x + column]);
        }
      }
    };
    Rng rng(derive_seed(seed_, static_cast<uint64_t>(RandomStream::Clutter), static_cast<uint64_t>(index)));
    const int item_x = static_cast<int>(rng.between(0, kCanvasSide - items.width));
    const int item_y = static_cast<int>(rng.between(0, kCanvasSide - items.height));
    const int n_fragments = static_cast<int>(rng.between(kMinFragments, kMaxFragments));
    for (int fragment = 0; fragment < n_fragments; ++fragment) {
      int64_t source = rng.below(size() - 1);  // any other item of the split
      if (source >= index) ++source;
      const int source_x = static_cast<int>(rng.between(0, items.width - kFragmentSide));
      const int source_y = static_cast<int>(rng.between(0, items.height - kFragmentSide));
      const int x = static_cast<int>(rng.between(0, kCanvasSide - kFragmentSide));
      const int y = static_cast<int>(rng.between(0, kCanvasSide - kFragmentSide));
      paste(source, source_x, source_y, kFragmentSide, kFragmentSide, x, y);
    }
    paste(index, 0, 0, items.width, items.height, item_x, item_y);

    ImageU8 image;
    image.width = image.height = kCanvasSide;
    image.pixels.resize(canvas.size() * 3);
    for (size_t i = 0; i < canvas.size(); ++i) {
      image.pixels[3 * i] = image.pixels[3 * i + 1] = image.pixels[3 * i + 2] = canvas[i];
    }
    return image;
  }

  std::string item_name(int64_t index) const override {
    return "fmnist-clutter:" + std::to_string(seed_) + " item " + std::to_string(index);
  }
  std::string format() const override { return "fmnist-clutter"; }
  std::string describe() const override {
    return "fmnist-clutter:" + std::to_string(seed_) + " of " + fashion_.root + " (" + fashion_.split + ")";
  }
  std::optional<std::pair<int, int>> image_size() const override { return std::make_pair(kCanvasSide, kCanvasSide); }

 private:
  PackedDatasetParts fashion_;
  uint64_t seed_;
};

}  // namespace

std::unique_ptr<Dataset> make_clutter_dataset(PackedDatasetParts fashion, uint64_t seed) {
  return std::make_unique<ClutterDataset>(std::move(fashion), seed);
}

}  // namespace vitprobe
