// Fair selection (issue 16): the held-out part of the training split, the default learning-rate grids and the
// grid-edge flag, selection on held-out accuracy, k-NN's k chosen on the held-out part, MAE's one-draw crop.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common/errors.h"
#include "data/holdout_split.h"
#include "data/transforms.h"
#include "probe/results.h"
#include "probe/trainer.h"
#include "test_probe_fixtures.h"

namespace vitprobe {
namespace {

using probe_test::ColourDataset;
using probe_test::MemorySource;
using probe_test::tiny_layout;

// Labels 0..3 with unequal class sizes (class c has 10 * (c + 1) items), shuffled by index.
class UnevenDataset final : public Dataset {
 public:
  UnevenDataset() : names_{"a", "b", "c", "d"} {
    for (int c = 0; c < 4; ++c) {
      for (int i = 0; i < 10 * (c + 1); ++i) labels_.push_back(c);
    }
    std::reverse(labels_.begin() + 7, labels_.end());
  }
  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  const std::vector<std::string>& class_names() const override { return names_; }
  int64_t label(int64_t index) const override { return labels_.at(static_cast<size_t>(index)); }
  ImageU8 load(int64_t) const override { return {}; }
  std::string item_name(int64_t index) const override { return "item " + std::to_string(index); }
  std::string format() const override { return "memory"; }
  std::string describe() const override { return "uneven"; }

 private:
  std::vector<std::string> names_;
  std::vector<int64_t> labels_;
};

TEST(ProbeSelection, HoldoutIsStratifiedDisjointAndSeeded) {
  const UnevenDataset dataset;
  const auto split = stratified_holdout(dataset, 0.1, 0);
  std::vector<int64_t> held_per_class(4, 0), fit_per_class(4, 0);
  for (const auto i : split.holdout) ++held_per_class[static_cast<size_t>(dataset.label(i))];
  for (const auto i : split.fit) ++fit_per_class[static_cast<size_t>(dataset.label(i))];
  // round(0.1 * 10 (c + 1)) = c + 1 held out of each class.
  EXPECT_EQ(held_per_class, (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(fit_per_class, (std::vector<int64_t>{9, 18, 27, 36}));
  std::set<int64_t> all(split.holdout.begin(), split.holdout.end());
  all.insert(split.fit.begin(), split.fit.end());
  EXPECT_EQ(static_cast<int64_t>(all.size()), dataset.size());  // disjoint and covering
  EXPECT_TRUE(std::is_sorted(split.holdout.begin(), split.holdout.end()));
  EXPECT_EQ(stratified_holdout(dataset, 0.1, 0).holdout, split.holdout);  // same seed, same items
  EXPECT_NE(stratified_holdout(dataset, 0.1, 1).holdout, split.holdout);  // another seed, other items
  const auto view = make_subset_view(dataset, split.holdout, "held-out part");
  ASSERT_EQ(view->size(), 10);
  for (int64_t i = 0; i < view->size(); ++i) EXPECT_EQ(view->label(i), dataset.label(split.holdout[static_cast<size_t>(i)]));
}

TEST(ProbeSelection, HoldoutRefusesFractionsOutsideTheRangeAndTinySplits) {
  const UnevenDataset dataset;
  EXPECT_THROW(stratified_holdout(dataset, 0.0, 0), BadInput);
  EXPECT_THROW(stratified_holdout(dataset, 0.6, 0), BadInput);
  EXPECT_THROW(stratified_holdout(dataset, std::nan(""), 0), BadInput);
  const ColourDataset one_per_class(3, 3);  // a class with one item keeps it for training
  EXPECT_THROW(stratified_holdout(one_per_class, 0.1, 0), BadInput);
  const ColourDataset two_per_class(6, 3);  // at least one item of every class with two or more
  EXPECT_EQ(stratified_holdout(two_per_class, 0.1, 0).holdout.size(), 3u);
}

TEST(ProbeSelection, DefaultGridsBracketTheOfficialRatesByTwoDecades) {
  // (optimizer, official base rate)
  for (const auto& [optimizer, official] : std::vector<std::pair<std::string, double>>{{"lars", 0.1}, {"sgd", 0.1}, {"adamw", 1e-4}}) {
    SCOPED_TRACE(optimizer);
    const auto grid = default_learning_rate_grid(optimizer);
    ASSERT_EQ(grid.size(), 13u);
    EXPECT_TRUE(std::is_sorted(grid.begin(), grid.end()));
    EXPECT_LE(grid.front(), official / 100 * (1 + 1e-12));
    EXPECT_GE(grid.back(), official * 100 * (1 - 1e-12));
    for (size_t i = 1; i < grid.size(); ++i) {  // log-spaced: 1, 2, 5 per decade
      const double step = grid[i] / grid[i - 1];
      EXPECT_TRUE(std::abs(step - 2.0) < 1e-9 || std::abs(step - 2.5) < 1e-9) << grid[i - 1] << " -> " << grid[i];
    }
  }
  EXPECT_EQ(default_learning_rate_grid("lars")[2], 0.005);  // decimal values, not 0.005000000000000001
  EXPECT_THROW(default_learning_rate_grid("adam"), BadInput);
}

TEST(ProbeSelection, GridEdgeFlag) {
  const std::vector<double> grid = {0.1, 0.01, 1.0, 0.5};
  EXPECT_EQ(at_grid_edge(grid, 0.01), true);
  EXPECT_EQ(at_grid_edge(grid, 1.0), true);
  EXPECT_EQ(at_grid_edge(grid, 0.1), false);
  EXPECT_FALSE(at_grid_edge({0.1, 1.0}, 1.0).has_value());  // two values bracket nothing
  EXPECT_FALSE(at_grid_edge({0.1, 0.1, 0.1}, 0.1).has_value());
  const auto line = edge_warning("cls", 1.0, grid);
  EXPECT_NE(line.find("cls"), std::string::npos);
  EXPECT_NE(line.find("widen --lrs"), std::string::npos);
  EXPECT_NE(line.find("0.01 .. 1"), std::string::npos);
}

// Features whose [cls] carries the label; `flip` swaps the labels of the first `flipped` items, so that a
// source built from them disagrees with the clean one.
std::pair<FeatureMap, at::Tensor> labelled(int64_t n, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  const auto labels = at::arange(n, at::kLong).remainder(2);
  auto tokens = at::randn({n, 5, 8}, generator);
  tokens.select(1, 0).select(1, 0).add_(labels.to(at::kFloat) * 1.5 - 0.75);
  return {compute_features(tokens, {}, tiny_layout(), {"tokens", "cls", "mean"}), labels};
}

TEST(ProbeSelection, TheHeldOutPartChoosesAndValidationIsReportedAtTheChoice) {
  const auto [features, labels] = labelled(128, 3);
  // The held-out part has the training labels; the validation labels are inverted, so that the epoch and rate
  // that validation would choose differ from the held-out choice.
  const auto inverted = labels.neg().add(1);
  MemorySource train(features, labels, 16, true, 0), holdout(features, labels, 64, false, 0),
      val(features, inverted, 64, false, 0);
  TrainerOptions opts;
  opts.epochs = 3;
  opts.warmup_epochs = 0;
  opts.batch_size = 16;
  opts.base_lrs = {0.01, 1.0, 50.0};
  opts.optimizer.kind = "sgd";
  opts.optimizer.momentum = 0.0;
  ProbeTrainer trainer(parse_head_list("cls"), tiny_layout(), 2, opts, at::kCPU);
  for (int epoch = 0; epoch < 3; ++epoch) {
    trainer.train_epoch(train, epoch);
    trainer.evaluate(val, &holdout, epoch);
  }
  for (const auto& run : trainer.runs()) {
    SCOPED_TRACE(run.name());
    ASSERT_EQ(run.holdout.size(), 3u);
    ASSERT_EQ(run.val.size(), 3u);
    // The chosen epoch is the first with the best held-out top-1; the reported figures are validation's there.
    int64_t chosen = 0;
    for (size_t e = 1; e < run.holdout.size(); ++e) {
      if (run.holdout[e].top1 > run.holdout[static_cast<size_t>(chosen)].top1) chosen = static_cast<int64_t>(e);
    }
    EXPECT_EQ(run.best_epoch, chosen);
    EXPECT_DOUBLE_EQ(run.selection_top1, run.holdout[static_cast<size_t>(chosen)].top1);
    EXPECT_DOUBLE_EQ(run.best_top1, run.val[static_cast<size_t>(chosen)].top1);
    EXPECT_NEAR(run.best_top1 + run.selection_top1, 100.0, 1e-9);  // inverted labels: top-1 sums to 100
  }
  // Choosing on validation would have picked other epochs: the held-out part, not validation, chose.
  bool differs = false;
  for (const auto& run : trainer.runs()) {
    size_t val_best = 0;
    for (size_t e = 1; e < run.val.size(); ++e) {
      if (run.val[e].top1 > run.val[val_best].top1) val_best = e;
    }
    differs = differs || static_cast<int64_t>(val_best) != run.best_epoch;
  }
  EXPECT_TRUE(differs);
  const int best = best_run_index(trainer, "cls");
  for (const auto& run : trainer.runs()) EXPECT_LE(run.selection_top1, trainer.runs()[best].selection_top1);
  const auto results = trained_head_results(trainer, {});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["selected_on"], "train-holdout");
  EXPECT_DOUBLE_EQ(results[0]["holdout_top1"].get<double>(), trainer.runs()[best].selection_top1);
  EXPECT_DOUBLE_EQ(results[0]["top1"].get<double>(), trainer.runs()[best].best_top1);
  EXPECT_TRUE(results[0]["lr_at_grid_edge"].is_boolean());
  EXPECT_EQ(results[0]["runs"][0]["holdout"].size(), 3u);
  // The held-out history survives a checkpoint.
  std::map<std::string, at::Tensor> saved;
  for (const auto& [name, tensor] : trainer.checkpoint_tensors()) saved[name] = tensor.clone();
  ProbeTrainer restored(parse_head_list("cls"), tiny_layout(), 2, opts, at::kCPU);
  restored.restore(saved, nlohmann::json::parse(trainer.checkpoint_metadata().dump()), "state");
  for (size_t i = 0; i < trainer.runs().size(); ++i) {
    EXPECT_EQ(restored.runs()[i].holdout.size(), 3u);
    EXPECT_EQ(restored.runs()[i].selection_top1, trainer.runs()[i].selection_top1);
  }
}

TEST(ProbeSelection, KnnChoosesKOnTheHeldOutPart) {
  HeadSpec spec = parse_head_spec("knn");
  const std::vector<KnnAccuracy> val = {{10, 80, 95}, {20, 70, 90}, {100, 60, 85}};
  const std::vector<KnnAccuracy> held = {{10, 50, 90}, {20, 75, 92}, {100, 74, 91}};
  const auto chosen = knn_head_results(spec, val, 0.07, held);
  EXPECT_EQ(chosen["best_k"], 20);
  EXPECT_EQ(chosen["top1"], 70.0);  // validation at the held-out choice, not validation's maximum
  EXPECT_EQ(chosen["holdout_top1"], 75.0);
  EXPECT_EQ(chosen["selected_on"], "train-holdout");
  const auto on_val = knn_head_results(spec, val, 0.07);
  EXPECT_EQ(on_val["best_k"], 10);
  EXPECT_EQ(on_val["selected_on"], "val");
}

TEST(ProbeSelection, MaeCropSamplerDrawsOnceAndClampsToTheImage) {
  ResizedCropRanges ranges;
  int clamped = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    Rng rng(seed), copy(seed);
    const auto box = sample_one_draw_crop_box(40, 30, ranges, rng);
    ASSERT_GE(box.width, 1);
    ASSERT_GE(box.height, 1);
    ASSERT_LE(box.left + box.width, 40);
    ASSERT_LE(box.top + box.height, 30);
    // Exactly four draws: area, ratio, top, left (no retries).
    for (int i = 0; i < 4; ++i) copy.next_u64();
    EXPECT_EQ(rng.next_u64(), copy.next_u64());
    if (box.height == 30 || box.width == 40) ++clamped;
  }
  EXPECT_GT(clamped, 0);  // large areas reach a side and are clamped, never replaced by a central crop
  // A 10:1 strip: torchvision falls back to a central crop most of the time; MAE's sampler clamps instead.
  int full_height = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Rng rng(seed);
    const auto box = sample_one_draw_crop_box(200, 20, ranges, rng);
    full_height += box.height == 20;
    EXPECT_LE(box.width, 200);
  }
  EXPECT_GT(full_height, 100);
  EXPECT_EQ(parse_crop_sampler("mae"), CropSampler::Mae);
  EXPECT_THROW(parse_crop_sampler("tf"), BadInput);
}

}  // namespace
}  // namespace vitprobe
