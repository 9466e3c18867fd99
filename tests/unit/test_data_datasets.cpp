// Dataset formats read from tiny fixture files: labels and pixel layouts, --limit, and the errors for
// malformed inputs (each must name the file).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "common/errors.h"
#include "data/dataset.h"
#include "test_data_fixtures.h"

namespace vitprobe {
namespace {

using test::pattern;
using test::TempDir;

std::unique_ptr<Dataset> open(const std::string& text, const std::string& split = "train", int64_t limit = 0,
                              uint64_t seed = 0) {
  DatasetSpec spec;
  spec.text = text;
  spec.split = split;
  spec.limit = limit;
  spec.seed = seed;
  return open_dataset(spec);
}

// Runs `body`, expecting an exception of type E whose message contains every one of `parts`.
template <typename E, typename Body>
void expect_error(Body body, const std::vector<std::string>& parts) {
  try {
    body();
    ADD_FAILURE() << "no exception";
  } catch (const E& error) {
    for (const auto& part : parts) EXPECT_NE(std::string(error.what()).find(part), std::string::npos) << error.what();
  }
}

TEST(DataIdx, ReadsRawAndGzipWithLabelsAndPixels) {
  for (bool gzip : {false, true}) {
    TempDir dir;
    test::write_idx_dataset(dir.path(), 23, 7, gzip);
    auto train = open("mnist:" + dir.path());
    ASSERT_EQ(train->size(), 23);
    EXPECT_EQ(train->num_classes(), 10);
    EXPECT_EQ(train->class_names()[3], "3");
    EXPECT_EQ(train->image_size(), std::make_pair(28, 28));
    for (int64_t i : {0, 5, 22}) {
      EXPECT_EQ(train->label(i), i % 10);
      const ImageU8 image = train->load(i);
      ASSERT_EQ(image.width, 28);
      ASSERT_EQ(image.height, 28);
      for (int p : {0, 1, 28, 783}) {
        for (int c = 0; c < 3; ++c) EXPECT_EQ(image.pixels[3 * p + c], pattern(i, p)) << "item " << i << " pixel " << p;
      }
    }
    auto val = open("fashion-mnist:" + dir.path(), "val");
    EXPECT_EQ(val->size(), 7);
    EXPECT_EQ(val->class_names()[9], "Ankle boot");
    EXPECT_EQ(val->label(6), 6);
    EXPECT_EQ(open("fashion-mnist:" + dir.path(), "test")->size(), 7);
  }
}

TEST(DataIdx, FindsFilesInRawSubfolder) {
  TempDir dir;
  test::write_idx_dataset(dir / "raw", 4, 2, true);
  EXPECT_EQ(open("mnist:" + dir.path())->size(), 4);
}

TEST(DataIdx, RejectsWrongMagic) {
  TempDir dir;
  test::write_idx_dataset(dir.path(), 4, 2, false);
  auto labels = test::idx_labels(test::cyclic_labels(4));
  test::write_bytes(dir / "train-images-idx3-ubyte", labels);  // an IDX1 file where IDX3 belongs
  expect_error<BadInput>([&] { open("mnist:" + dir.path()); },
                         {dir / "train-images-idx3-ubyte", "magic 0x00000801", "0x00000803"});
}

TEST(DataIdx, RejectsDataSizeMismatch) {
  TempDir dir;
  test::write_idx_dataset(dir.path(), 4, 2, false);
  auto images = test::idx_images(4, 28, 28);
  images.resize(images.size() - 100);
  test::write_bytes(dir / "train-images-idx3-ubyte", images);
  expect_error<BadInput>([&] { open("mnist:" + dir.path()); },
                         {dir / "train-images-idx3-ubyte", "4x28x28", "truncated"});

  test::write_idx_dataset(dir.path(), 4, 2, false);
  test::write_bytes(dir / "train-labels-idx1-ubyte", test::idx_labels(test::cyclic_labels(5)));
  expect_error<BadInput>([&] { open("mnist:" + dir.path()); }, {"4 images", "5 labels"});

  test::write_bytes(dir / "train-labels-idx1-ubyte", test::idx_labels({0, 1, 12, 3}));
  expect_error<BadInput>([&] { open("mnist:" + dir.path()); }, {"train-labels-idx1-ubyte", "label 12"});
}

TEST(DataIdx, RejectsTruncatedGzipAndMissingFiles) {
  TempDir dir;
  test::write_idx_dataset(dir.path(), 50, 2, true);
  const std::string file = dir / "train-images-idx3-ubyte.gz";
  const auto size = std::filesystem::file_size(file);
  std::filesystem::resize_file(file, size / 2);
  expect_error<BadInput>([&] { open("mnist:" + dir.path()); }, {file, "gzip"});
  std::filesystem::remove(file);
  expect_error<IoError>([&] { open("mnist:" + dir.path()); }, {dir.path(), "train-images-idx3-ubyte"});
  expect_error<IoError>([&] { open("mnist:" + dir.path() + "/nowhere"); }, {"nowhere", "no such folder"});
}

TEST(DataCifar, Cifar10LayoutAndLabels) {
  TempDir dir;
  const std::string folder = dir / "cifar-10-batches-bin";
  for (int batch = 1; batch <= 5; ++batch) {
    test::write_bytes(folder + "/data_batch_" + std::to_string(batch) + ".bin",
                      test::cifar_batch(3, 3 * (batch - 1), 10, false));
  }
  test::write_bytes(folder + "/test_batch.bin", test::cifar_batch(4, 100, 10, false));
  auto train = open("cifar10:" + dir.path());
  ASSERT_EQ(train->size(), 15);
  EXPECT_EQ(train->class_names()[1], "automobile");
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(train->label(i), i % 10);
  const ImageU8 image = train->load(7);
  ASSERT_EQ(image.width, 32);
  // Planes: red bytes 0..1023, green 1024..2047, blue 2048..3071, each row-major.
  for (int y : {0, 5, 31}) {
    for (int x : {0, 17, 31}) {
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(image.pixels[(y * 32 + x) * 3 + c], pattern(7, c * 1024 + y * 32 + x));
      }
    }
  }
  EXPECT_NE(train->item_name(7).find("data_batch_3.bin record 1"), std::string::npos) << train->item_name(7);
  auto val = open("cifar10:" + folder, "val");  // the batches folder itself works too
  ASSERT_EQ(val->size(), 4);
  EXPECT_EQ(val->label(1), 101 % 10);
}

TEST(DataCifar, Cifar100UsesFineLabelsAndNames) {
  TempDir dir;
  test::write_bytes(dir / "train.bin", test::cifar_batch(120, 0, 100, true));
  test::write_bytes(dir / "test.bin", test::cifar_batch(2, 0, 100, true));
  std::string names;
  for (int i = 0; i < 100; ++i) names += "class" + std::to_string(i) + "\n";
  test::write_bytes(dir / "fine_label_names.txt", std::vector<uint8_t>(names.begin(), names.end()));
  auto train = open("cifar100:" + dir.path());
  ASSERT_EQ(train->size(), 120);
  EXPECT_EQ(train->num_classes(), 100);
  EXPECT_EQ(train->label(113), 13);
  EXPECT_EQ(train->class_names()[42], "class42");
  EXPECT_EQ(train->load(113).pixels[0], pattern(113, 0));
}

TEST(DataCifar, RejectsTruncatedAndMissingBatches) {
  TempDir dir;
  for (int batch = 1; batch <= 5; ++batch) {
    test::write_bytes(dir / ("data_batch_" + std::to_string(batch) + ".bin"), test::cifar_batch(2, 0, 10, false));
  }
  auto batch = test::cifar_batch(2, 0, 10, false);
  batch.pop_back();
  test::write_bytes(dir / "data_batch_4.bin", batch);
  expect_error<BadInput>([&] { open("cifar10:" + dir.path()); }, {dir / "data_batch_4.bin", "6145 bytes", "3073-byte"});
  std::filesystem::remove(dir / "data_batch_4.bin");
  expect_error<IoError>([&] { open("cifar10:" + dir.path()); }, {dir / "data_batch_4.bin", "missing"});
  auto bad_label = test::cifar_batch(1, 0, 10, false);
  bad_label[0] = 10;
  test::write_bytes(dir / "test_batch.bin", bad_label);
  expect_error<BadInput>([&] { open("cifar10:" + dir.path(), "val"); }, {"test_batch.bin record 0", "label 10"});
}

TEST(DataStl10, ColumnMajorPlanesAndOneBasedLabels) {
  TempDir dir;
  const std::string folder = dir / "stl10_binary";
  const int n = 3, side = 96, image_bytes = 3 * side * side;
  std::vector<uint8_t> images, labels;
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < image_bytes; ++p) images.push_back(pattern(i, p));
    labels.push_back(static_cast<uint8_t>(i + 1));
  }
  test::write_bytes(folder + "/train_X.bin", images);
  test::write_bytes(folder + "/train_y.bin", labels);
  auto train = open("stl10:" + dir.path());
  ASSERT_EQ(train->size(), n);
  EXPECT_EQ(train->label(2), 2);
  EXPECT_EQ(train->class_names()[7], "monkey");
  const ImageU8 image = train->load(1);
  // Plane c holds pixel (y, x) at c * 96 * 96 + x * 96 + y (column-major).
  for (int y : {0, 3, 95}) {
    for (int x : {0, 40, 95}) {
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(image.pixels[(y * side + x) * 3 + c], pattern(1, c * side * side + x * side + y));
      }
    }
  }

  images.resize(images.size() - 5);
  test::write_bytes(folder + "/train_X.bin", images);
  expect_error<BadInput>([&] { open("stl10:" + dir.path()); }, {folder + "/train_X.bin", "27648-byte"});
  images.resize(static_cast<size_t>(image_bytes) * 2);
  test::write_bytes(folder + "/train_X.bin", images);
  expect_error<BadInput>([&] { open("stl10:" + dir.path()); }, {"2 images", "3 labels"});
  expect_error<IoError>([&] { open("stl10:" + dir.path(), "val"); }, {folder + "/test_X.bin"});
}

TEST(DataImageFolder, TorchvisionOrderAndLabels) {
  TempDir dir;
  const std::string train = dir / "train";
  test::write_pnm(train + "/zebra/b.ppm", 5, 4, 0);
  test::write_pnm(train + "/zebra/A.PPM", 5, 4, 1);  // extensions match case-insensitively
  test::write_pnm(train + "/apple/x.ppm", 6, 3, 2);
  test::write_pnm(train + "/apple/sub/y.ppm", 6, 3, 3);      // nested folders are walked
  test::write_pnm(train + "/apple/sub-2/z.pgm", 6, 3, 4, true);
  test::write_bytes(train + "/apple/notes.txt", {'h', 'i'});  // not an image extension: ignored
  auto dataset = open("imagefolder:" + dir.path());
  ASSERT_EQ(dataset->size(), 5);
  EXPECT_EQ(dataset->class_names(), (std::vector<std::string>{"apple", "zebra"}));
  // sorted(os.walk): ".../apple" < ".../apple/sub" < ".../apple/sub-2" compare as whole path strings.
  const std::vector<std::string> expected = {train + "/apple/x.ppm", train + "/apple/sub/y.ppm",
                                             train + "/apple/sub-2/z.pgm", train + "/zebra/A.PPM",
                                             train + "/zebra/b.ppm"};
  const std::vector<int64_t> labels = {0, 0, 0, 1, 1};
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(dataset->item_name(i), expected[i]);
    EXPECT_EQ(dataset->label(i), labels[i]);
  }
  const ImageU8 grey = dataset->load(2);  // PGM: grey replicated to RGB
  ASSERT_EQ(grey.width, 6);
  EXPECT_EQ(grey.pixels[3 * 4], pattern(4, 4));
  EXPECT_EQ(grey.pixels[3 * 4 + 2], pattern(4, 4));
  EXPECT_EQ(dataset->load(3).pixels[5], pattern(1, 5));
}

TEST(DataImageFolder, ClearErrors) {
  TempDir dir;
  test::write_pnm(dir / "train/cat/a.ppm", 4, 4, 0);
  std::filesystem::create_directories(dir / "train/dog");
  expect_error<BadInput>([&] { open("imagefolder:" + dir.path()); }, {dir / "train/dog", "no image files"});
  expect_error<BadInput>([&] { open("imagefolder:" + dir.path(), "val"); }, {dir.path(), "no 'val' folder"});
  expect_error<IoError>([&] { open("imagefolder:" + dir.path() + "/missing"); }, {"missing", "no such folder"});
  std::filesystem::create_directories(dir / "val");
  expect_error<BadInput>([&] { open("imagefolder:" + dir.path(), "val"); }, {dir / "val", "no class folders"});
}

TEST(DataSpec, RejectsUnknownFormatSplitAndLimit) {
  expect_error<BadInput>([] { open("tiny-imagenet:/x"); }, {"unknown dataset format 'tiny-imagenet'", "imagefolder"});
  expect_error<BadInput>([] { open("imagefolder"); }, {"imagefolder needs a folder"});
  expect_error<BadInput>([] { open("cifar10:/x", "holdout"); }, {"--split 'holdout'"});
  expect_error<BadInput>([] { open("fmnist-clutter:abc"); }, {"SEED"});
  expect_error<BadInput>([] { open("cifar10:/x", "train", -1); }, {"--limit -1"});
}

TEST(DataLimit, BalancedSeededSubset) {
  TempDir dir;
  // Classes 0..9 with 10 items each, plus 2 more of class 0 and 1 (labels cycle).
  test::write_idx_dataset(dir.path(), 102, 2, false);
  auto subset = open("mnist:" + dir.path(), "train", 25, 7);
  ASSERT_EQ(subset->size(), 25);
  std::vector<int64_t> counts = class_counts(*subset);
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c], c < 5 ? 3 : 2) << "class " << c;  // 25 = 10 * 2 + 5
  auto again = open("mnist:" + dir.path(), "train", 25, 7);
  auto other = open("mnist:" + dir.path(), "train", 25, 8);
  bool differs = false;
  std::set<std::string> names;
  for (int64_t i = 0; i < 25; ++i) {
    EXPECT_EQ(subset->item_name(i), again->item_name(i));
    differs |= subset->item_name(i) != other->item_name(i);
    names.insert(subset->item_name(i));
    EXPECT_EQ(subset->load(i).pixels, again->load(i).pixels);
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(names.size(), 25u);
  EXPECT_EQ(open("mnist:" + dir.path(), "train", 500)->size(), 102);  // a limit above the size keeps all

  // A class with fewer items than its share gives what it has; the others fill the rest.
  std::vector<uint8_t> labels(30, 1);
  labels[3] = 0;
  test::write_bytes(dir / "train-images-idx3-ubyte", test::idx_images(30, 28, 28));
  test::write_bytes(dir / "train-labels-idx1-ubyte", test::idx_labels(labels));
  auto skewed = open("mnist:" + dir.path(), "train", 10);
  EXPECT_EQ(class_counts(*skewed)[0], 1);
  EXPECT_EQ(class_counts(*skewed)[1], 9);
}

TEST(DataClutter, DeterministicForSeedWithItemInside) {
  TempDir dir;
  test::write_idx_dataset(dir.path(), 40, 12, true);
  auto clutter = open("fmnist-clutter:3:" + dir.path());
  auto fashion = open("fashion-mnist:" + dir.path());
  ASSERT_EQ(clutter->size(), 40);
  EXPECT_EQ(clutter->image_size(), std::make_pair(64, 64));
  EXPECT_EQ(clutter->class_names(), fashion->class_names());
  auto same = open("fmnist-clutter:3:" + dir.path());
  auto other = open("fmnist-clutter:4:" + dir.path());
  // Loading in a different order gives the same images: each item depends on (seed, item) only.
  for (int64_t i : {17, 0, 39, 5}) {
    const ImageU8 image = clutter->load(i);
    EXPECT_EQ(clutter->label(i), fashion->label(i));
    EXPECT_EQ(image.pixels, same->load(i).pixels);
    EXPECT_NE(image.pixels, other->load(i).pixels);
    // The item is pasted last with max(), so some 28x28 window holds at least the item's pixels everywhere.
    const ImageU8 item = fashion->load(i);
    bool found = false;
    for (int y = 0; y <= 36 && !found; ++y) {
      for (int x = 0; x <= 36 && !found; ++x) {
        bool covers = true;
        for (int p = 0; p < 28 * 28 && covers; ++p) {
          covers = image.pixels[((y + p / 28) * 64 + x + p % 28) * 3] >= item.pixels[3 * p];
        }
        found = covers;
      }
    }
    EXPECT_TRUE(found) << "item " << i;
  }
  EXPECT_EQ(open("fmnist-clutter:3:" + dir.path(), "val")->size(), 12);
}

}  // namespace
}  // namespace vitprobe
