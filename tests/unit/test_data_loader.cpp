// BatchLoader: order, coverage, independence from the worker count, sharding, dtypes, and bad items.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <set>

#include "common/errors.h"
#include "data/loader.h"
#include "test_data_fixtures.h"

namespace vitprobe {
namespace {

// Item i is a 12x10 image whose pixels encode i; items listed in `bad` fail like a corrupt file.
class SyntheticDataset : public Dataset {
 public:
  SyntheticDataset(int64_t n, std::set<int64_t> bad = {}) : n_(n), bad_(std::move(bad)) {}
  int64_t size() const override { return n_; }
  const std::vector<std::string>& class_names() const override { return names_; }
  int64_t label(int64_t index) const override { return index % 3; }
  ImageU8 load(int64_t index) const override {
    if (bad_.count(index)) throw BadInput(item_name(index) + ": cannot decode image: JPEG: premature end");
    ImageU8 image;
    image.width = 12;
    image.height = 10;
    for (int p = 0; p < 120; ++p) {
      for (int c = 0; c < 3; ++c) image.pixels.push_back(static_cast<uint8_t>((index + p * 3 + c * 50) % 256));
    }
    return image;
  }
  std::string item_name(int64_t index) const override { return "/fake/item_" + std::to_string(index) + ".jpg"; }
  std::string format() const override { return "synthetic"; }
  std::string describe() const override { return "synthetic"; }

 private:
  int64_t n_;
  std::set<int64_t> bad_;
  std::vector<std::string> names_ = {"a", "b", "c"};
};

TransformOptions eval_identity() {
  // resize 10 = the shorter side (no resampling), crop 10: the central 10x10 of each image, unresampled.
  TransformOptions options;
  options.preprocess.resize = 10;
  options.preprocess.crop = 10;
  options.preprocess.mean = {0, 0, 0};
  options.preprocess.std = {1, 1, 1};
  return options;
}

TransformOptions train_preset() {
  TransformOptions options;
  options.preset = TransformPreset::Train;
  options.preprocess.crop = 8;
  return options;
}

std::vector<Batch> run_epoch(BatchLoader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> batches;
  while (auto batch = loader.next()) batches.push_back(std::move(*batch));
  return batches;
}

std::vector<int64_t> indices_of(const std::vector<Batch>& batches) {
  std::vector<int64_t> all;
  for (const auto& batch : batches) {
    for (int64_t i = 0; i < batch.indices.size(0); ++i) all.push_back(batch.indices[i].item<int64_t>());
  }
  return all;
}

TEST(LoaderOrder, SequentialBatchesWithRightContents) {
  SyntheticDataset dataset(23);
  LoaderOptions options;
  options.batch_size = 5;
  options.num_workers = 3;
  BatchLoader loader(dataset, ImageTransform(eval_identity()), options);
  const auto batches = run_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 5u);
  EXPECT_EQ(loader.num_batches(), 5);
  EXPECT_EQ(batches.back().images.size(0), 3);
  std::vector<int64_t> expected(23);
  for (int64_t i = 0; i < 23; ++i) expected[i] = i;
  EXPECT_EQ(indices_of(batches), expected);
  for (const auto& batch : batches) {
    EXPECT_TRUE(batch.images.is_contiguous());
    EXPECT_EQ(batch.images.scalar_type(), at::kFloat);
    EXPECT_EQ(batch.labels.scalar_type(), at::kLong);
    for (int64_t row = 0; row < batch.images.size(0); ++row) {
      const int64_t index = batch.indices[row].item<int64_t>();
      EXPECT_EQ(batch.labels[row].item<int64_t>(), index % 3);
      // The 10x10 centre crop starts at column 1, so its pixel (0, 0) of channel 1 holds (index + 3 + 50) / 255.
      EXPECT_FLOAT_EQ(batch.images[row][1][0][0].item<float>(), static_cast<float>((index + 53) % 256) / 255.0f);
    }
  }
  EXPECT_FALSE(loader.next().has_value());
}

TEST(LoaderOrder, ShuffleSeededPerEpochEachItemOnce) {
  SyntheticDataset dataset(50);
  LoaderOptions options;
  options.batch_size = 8;
  options.shuffle = true;
  options.seed = 3;
  BatchLoader loader(dataset, ImageTransform(eval_identity()), options);
  const auto epoch0 = indices_of(run_epoch(loader, 0));
  const auto epoch1 = indices_of(run_epoch(loader, 1));
  EXPECT_EQ(indices_of(run_epoch(loader, 0)), epoch0);  // the same epoch again
  EXPECT_NE(epoch0, epoch1);
  for (const auto& order : {epoch0, epoch1}) {
    EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 50u);
    EXPECT_EQ(order.size(), 50u);
  }
  options.seed = 4;
  BatchLoader other(dataset, ImageTransform(eval_identity()), options);
  EXPECT_NE(indices_of(run_epoch(other, 0)), epoch0);
}

TEST(LoaderWorkers, SameBatchesForOneAndTwoWorkers) {
  SyntheticDataset dataset(37);
  std::vector<std::vector<Batch>> runs;
  for (int workers : {1, 2, 5}) {
    LoaderOptions options;
    options.batch_size = 6;
    options.num_workers = workers;
    options.shuffle = true;
    options.seed = 17;
    options.prefetch_batches = workers == 5 ? 1 : 3;
    BatchLoader loader(dataset, ImageTransform(train_preset()), options);
    runs.push_back(run_epoch(loader, 2));
  }
  for (size_t run = 1; run < runs.size(); ++run) {
    ASSERT_EQ(runs[run].size(), runs[0].size());
    for (size_t b = 0; b < runs[0].size(); ++b) {
      EXPECT_TRUE(at::equal(runs[run][b].images, runs[0][b].images)) << "run " << run << " batch " << b;
      EXPECT_TRUE(at::equal(runs[run][b].indices, runs[0][b].indices));
      EXPECT_TRUE(at::equal(runs[run][b].labels, runs[0][b].labels));
    }
  }
}

TEST(LoaderShard, EveryItemExactlyOnceAcrossRanks) {
  SyntheticDataset dataset(29);
  std::vector<int64_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    LoaderOptions options;
    options.batch_size = 4;
    options.shuffle = true;
    options.seed = 9;
    options.rank = rank;
    options.world_size = 3;
    BatchLoader loader(dataset, ImageTransform(eval_identity()), options);
    const auto indices = indices_of(run_epoch(loader, 1));
    EXPECT_EQ(static_cast<int64_t>(indices.size()), loader.num_items());
    seen.insert(seen.end(), indices.begin(), indices.end());
  }
  EXPECT_EQ(seen.size(), 29u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 29u);
  LoaderOptions bad_rank;
  bad_rank.rank = 3;
  bad_rank.world_size = 3;
  EXPECT_THROW(BatchLoader(dataset, ImageTransform(eval_identity()), bad_rank), BadInput);
}

TEST(LoaderBatches, Bfloat16AndDropLast) {
  SyntheticDataset dataset(11);
  LoaderOptions options;
  options.batch_size = 4;
  options.drop_last = true;
  options.bfloat16 = true;
  BatchLoader loader(dataset, ImageTransform(train_preset()), options);
  const auto batches = run_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1].images.sizes(), (std::vector<int64_t>{4, 3, 8, 8}));
  EXPECT_EQ(batches[0].images.scalar_type(), at::kBFloat16);
  options.bfloat16 = false;
  BatchLoader as_float(dataset, ImageTransform(train_preset()), options);
  const auto float_batches = run_epoch(as_float, 0);
  EXPECT_TRUE(at::equal(float_batches[0].images.to(at::kBFloat16), batches[0].images));
}

TEST(LoaderErrors, BadItemStopsWithItsName) {
  SyntheticDataset dataset(20, {13});
  LoaderOptions options;
  options.batch_size = 4;
  options.num_workers = 2;
  BatchLoader loader(dataset, ImageTransform(eval_identity()), options);
  loader.start_epoch(0);
  int good_batches = 0;
  try {
    while (loader.next()) ++good_batches;
    FAIL() << "no error";
  } catch (const BadInput& error) {
    EXPECT_NE(std::string(error.what()).find("/fake/item_13.jpg"), std::string::npos) << error.what();
  }
  EXPECT_EQ(good_batches, 3);  // batches 0-2 are complete; item 13 is in batch 3
  EXPECT_FALSE(loader.next().has_value());
}

TEST(LoaderErrors, SkipBadCountsAndLeavesItemsOut) {
  SyntheticDataset dataset(20, {0, 13, 14});
  LoaderOptions options;
  options.batch_size = 4;
  options.skip_bad = true;
  BatchLoader loader(dataset, ImageTransform(eval_identity()), options);
  const auto indices = indices_of(run_epoch(loader, 0));
  EXPECT_EQ(indices.size(), 17u);
  EXPECT_EQ(std::count(indices.begin(), indices.end(), 13), 0);
  ASSERT_EQ(loader.skipped().size(), 3u);
  EXPECT_EQ(loader.skipped()[1].index, 13);
  EXPECT_EQ(loader.skipped()[1].name, "/fake/item_13.jpg");
  EXPECT_NE(loader.skipped()[1].error.find("premature end"), std::string::npos);
}

TEST(LoaderErrors, CorruptFileInImageFolderIsNamed) {
  test::TempDir dir;
  test::write_pnm(dir / "val/a/good.ppm", 12, 10, 1);
  test::write_bytes(dir / "val/a/broken.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F'});
  test::write_pnm(dir / "val/b/fine.ppm", 12, 10, 2);
  DatasetSpec spec;
  spec.text = "imagefolder:" + dir.path();
  spec.split = "val";
  auto dataset = open_dataset(spec);
  LoaderOptions options;
  options.batch_size = 2;
  BatchLoader loader(*dataset, ImageTransform(eval_identity()), options);
  loader.start_epoch(0);
  try {
    while (loader.next()) {
    }
    FAIL() << "no error";
  } catch (const BadInput& error) {
    EXPECT_NE(std::string(error.what()).find(dir / "val/a/broken.jpg"), std::string::npos) << error.what();
  }
  options.skip_bad = true;
  BatchLoader skipping(*dataset, ImageTransform(eval_identity()), options);
  EXPECT_EQ(indices_of(run_epoch(skipping, 0)), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(skipping.skipped().size(), 1u);
}

TEST(LoaderEpochOrder, ShardsArePartitionOfPermutation) {
  LoaderOptions options;
  options.shuffle = true;
  options.seed = 1;
  const auto full = epoch_order(10, options, 0);
  options.world_size = 2;
  options.rank = 1;
  const auto odd = epoch_order(10, options, 0);
  ASSERT_EQ(odd.size(), 5u);
  for (size_t i = 0; i < odd.size(); ++i) EXPECT_EQ(odd[i], full[2 * i + 1]);
  EXPECT_NE(sample_seed(1, 0, 5), sample_seed(1, 1, 5));
  EXPECT_NE(sample_seed(1, 0, 5), sample_seed(1, 0, 6));
}

}  // namespace
}  // namespace vitprobe
