// The probe trainer (many heads x learning rates, resume), cached features and k-NN.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "data/loader.h"
#include "probe/feature_cache.h"
#include "probe/knn.h"
#include "probe/trainer.h"
#include "test_probe_fixtures.h"

namespace vitprobe {
namespace {

using probe_test::MemorySource;

using probe_test::tiny_layout;

// Tokens whose [cls] and one patch carry the class (as a mean shift), the other patches noise.
std::pair<FeatureMap, at::Tensor> separable(int64_t n, int64_t classes, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  const auto labels = at::arange(n, at::kLong).remainder(classes);
  const auto centres = at::randn({classes, 8}, generator) * 2;
  auto tokens = at::randn({n, 5, 8}, generator);
  tokens.select(1, 0).add_(centres.index_select(0, labels));
  tokens.select(1, 3).add_(centres.index_select(0, labels) * 2);
  auto features = compute_features(tokens, {}, tiny_layout(), {"tokens", "cls", "mean"});
  return {features, labels};
}

TrainerOptions options(std::vector<double> lrs, int epochs = 6) {
  TrainerOptions options;
  options.epochs = epochs;
  options.warmup_epochs = 1;
  options.batch_size = 16;
  options.base_lrs = std::move(lrs);
  options.optimizer.kind = "sgd";
  // MAE's N(0, 0.01) classifier: these few steps of SGD on toy data are sized for a small start (from nn.Linear's
  // U(+-1/sqrt(8)) abmilp stays near 80% after 12 epochs); the default init is checked against PyTorch in
  // ProbeReference.ClassifierInitialisationAsPyTorchAndMae.
  options.classifier_init = ClassifierInit::Mae;
  return options;
}

TEST(ProbeTrainer, OnePassTrainsEveryHeadAtEveryLearningRate) {
  const auto [features, labels] = separable(128, 4, 1);
  MemorySource train(features, labels, 16, true, 0), val(features, labels, 32, false, 0);
  ProbeTrainer trainer(parse_head_list("cls,mean,abmilp,knn"), tiny_layout(), 4, options({1.0, 4.0}), at::kCPU);
  ASSERT_EQ(trainer.runs().size(), 6u);  // knn is not trained
  EXPECT_EQ(trainer.required_features(), (std::set<std::string>{"cls", "mean", "tokens"}));
  // Pairs of one head start from the same weights.
  EXPECT_TRUE(at::equal(trainer.runs()[0].head->parameters().front().second, trainer.runs()[1].head->parameters().front().second));
  EXPECT_DOUBLE_EQ(trainer.runs()[1].peak_lr, 4.0 * 16 / 256);
  for (int epoch = 0; epoch < 6; ++epoch) {
    trainer.train_epoch(train, epoch);
    trainer.evaluate(val, epoch);
  }
  for (const auto& run : trainer.runs()) {
    SCOPED_TRACE(run.name());
    ASSERT_EQ(run.train_loss.size(), 6u);
    EXPECT_LT(run.train_loss.back(), run.train_loss.front());
    EXPECT_GT(run.best_top1, 90.0);
    EXPECT_FALSE(run.best_state.empty());
    EXPECT_GT(run.seconds, 0.0);
  }
}

TEST(ProbeTrainer, ResumingGivesTheSameWeightsAsAnUninterruptedRun) {
  const auto [features, labels] = separable(96, 3, 2);
  const auto specs = parse_head_list("mean,ep:2");
  auto opts = options({0.5}, 4);
  opts.optimizer.kind = "lars";
  opts.base_lrs = {2.0};
  MemorySource train(features, labels, 16, true, 5), val(features, labels, 32, false, 0);
  ProbeTrainer straight(specs, tiny_layout(), 3, opts, at::kCPU);
  for (int epoch = 0; epoch < 4; ++epoch) {
    straight.train_epoch(train, epoch);
    straight.evaluate(val, epoch);
  }
  ProbeTrainer first(specs, tiny_layout(), 3, opts, at::kCPU);
  for (int epoch = 0; epoch < 2; ++epoch) {
    first.train_epoch(train, epoch);
    first.evaluate(val, epoch);
  }
  std::map<std::string, at::Tensor> saved;
  for (const auto& [name, tensor] : first.checkpoint_tensors()) saved[name] = tensor.clone();
  const auto metadata = nlohmann::json::parse(first.checkpoint_metadata().dump());
  ProbeTrainer second(specs, tiny_layout(), 3, opts, at::kCPU);
  second.restore(saved, metadata, "checkpoint");
  for (int epoch = 2; epoch < 4; ++epoch) {
    second.train_epoch(train, epoch);
    second.evaluate(val, epoch);
  }
  for (size_t i = 0; i < straight.runs().size(); ++i) {
    const auto a = straight.runs()[i].head->state(), b = second.runs()[i].head->state();
    for (size_t j = 0; j < a.size(); ++j) EXPECT_TRUE(at::equal(a[j].second, b[j].second)) << a[j].first;
    EXPECT_EQ(straight.runs()[i].train_loss, second.runs()[i].train_loss);
    EXPECT_EQ(straight.runs()[i].best_epoch, second.runs()[i].best_epoch);
  }
}

TEST(ProbeTrainer, RestoreRefusesAnotherGrid) {
  const auto [features, labels] = separable(32, 2, 3);
  ProbeTrainer trainer(parse_head_list("cls"), tiny_layout(), 2, options({0.1}), at::kCPU);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, tensor] : trainer.checkpoint_tensors()) tensors[name] = tensor;
  ProbeTrainer other(parse_head_list("cls"), tiny_layout(), 2, options({0.1, 0.2}), at::kCPU);
  EXPECT_THROW(other.restore(tensors, trainer.checkpoint_metadata(), "checkpoint"), BadInput);
}

TEST(ProbeKnn, ClustersAreClassifiedAndKIsClamped) {
  auto generator = at::detail::createCPUGenerator(4);
  const auto labels = at::arange(60, at::kLong).remainder(3);
  const auto centres = at::randn({3, 6}, generator) * 5;
  const auto train = centres.index_select(0, labels) + 0.1 * at::randn({60, 6}, generator);
  const auto val = centres.index_select(0, labels.slice(0, 0, 30)) + 0.1 * at::randn({30, 6}, generator);
  const auto results = knn_classify(train, labels, val, labels.slice(0, 0, 30), 3, {1, 10, 500}, 0.07, 7);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_DOUBLE_EQ(results[0].top1, 100.0);
  EXPECT_DOUBLE_EQ(results[1].top1, 100.0);
  EXPECT_DOUBLE_EQ(results[2].top5, 100.0);
}

TEST(ProbeFeatureCache, StoresReusesAndMatchesOnlineFeatures) {
  probe_test::ScratchDir dir;
  const auto encoder = probe_test::tiny_encoder();
  probe_test::ColourDataset dataset(20, 3);
  TransformOptions transform_options;
  transform_options.preprocess.resize = 36;
  transform_options.preprocess.crop = 32;
  const ImageTransform transform(transform_options);
  const std::set<std::string> names = {"cls", "mean", "tokens", "attn-mean"};
  const FeatureExtractor extractor(encoder, -1, true, names);
  LoaderOptions loader;
  loader.batch_size = 6;
  FeatureCacheKey key;
  key.model_sha256 = "test";
  key.data = "colour";
  key.split = "train";
  key.block = 1;
  key.transform = describe_transform(transform_options);
  EXPECT_EQ(FeatureCache::open(dir.path(), key, names), nullptr);
  const auto cache = FeatureCache::build(dir.path(), key, names, dataset, transform, extractor, loader, false);
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->size(), 20);
  EXPECT_EQ(cache->names(), names);
  const auto manifest_time = std::filesystem::last_write_time(cache->folder() + "/manifest.json");
  EXPECT_NE(FeatureCache::open(dir.path(), key, {"cls"}), nullptr);
  EXPECT_EQ(std::filesystem::last_write_time(cache->folder() + "/manifest.json"), manifest_time);
  // A key that differs in the block is another entry.
  auto other = key;
  other.block = 0;
  EXPECT_NE(other.digest(), key.digest());
  EXPECT_EQ(FeatureCache::open(dir.path(), other, names), nullptr);

  // Online features of the same items, in the same order, equal the cached ones up to bf16 rounding.
  OnlineFeatures online(dataset, transform, loader, extractor);
  CachedFeatures cached(*cache, names, loader, at::kCPU);
  online.start_epoch(0);
  cached.start_epoch(0);
  EXPECT_EQ(cached.num_batches(), online.num_batches());
  while (auto expected = online.next()) {
    auto actual = cached.next();
    ASSERT_TRUE(actual.has_value());
    EXPECT_TRUE(at::equal(actual->indices, expected->indices));
    EXPECT_TRUE(at::equal(actual->labels, expected->labels));
    for (const auto& name : names) {
      const auto& a = actual->features.at(name);
      const auto& e = expected->features.at(name);
      EXPECT_LT((a - e).abs().max().item<double>(), 0.01 * (1 + e.abs().max().item<double>())) << name;
    }
  }
  EXPECT_FALSE(cached.next().has_value());

  // A missing feature is added to the existing entry.
  const auto grown = FeatureCache::build(dir.path(), key, {"center:2"}, dataset, transform,
                                         extractor.with_names({"center:2"}), loader, false);
  EXPECT_EQ(grown->names().size(), names.size() + 1);
}

TEST(ProbeFeatureCache, ShuffledEpochsVisitEveryItemOnce) {
  probe_test::ScratchDir dir;
  const auto encoder = probe_test::tiny_encoder(2);
  probe_test::ColourDataset dataset(13, 2);
  TransformOptions transform_options;
  transform_options.preprocess.resize = 32;
  transform_options.preprocess.crop = 32;
  const FeatureExtractor extractor(encoder, 0, false, {"mean"});
  LoaderOptions loader;
  loader.batch_size = 4;
  FeatureCacheKey key;
  key.transform = describe_transform(transform_options);
  const auto cache = FeatureCache::build(dir.path(), key, {"mean"}, dataset, ImageTransform(transform_options), extractor,
                                         loader, false);
  loader.shuffle = true;
  loader.seed = 3;
  CachedFeatures source(*cache, {"mean"}, loader, at::kCPU);
  for (int epoch = 0; epoch < 2; ++epoch) {
    source.start_epoch(epoch);
    std::vector<int64_t> seen;
    while (auto batch = source.next()) {
      for (int64_t i = 0; i < batch->indices.size(0); ++i) seen.push_back(batch->indices[i].item<int64_t>());
    }
    EXPECT_EQ(seen, epoch_order(13, loader, epoch));
  }
}

}  // namespace
}  // namespace vitprobe
