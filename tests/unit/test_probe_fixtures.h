#pragma once
// Shared by the probe unit tests: a tiny random ViT and an in-memory labelled dataset whose classes differ in
// colour, so that probes can learn them in a few steps.
#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "probe/feature_source.h"
#include "test_data_fixtures.h"
#include "model/vit_encoder.h"

namespace vitprobe::probe_test {

/// A 32 px, patch 8 (4x4 grid), width 32, 2 blocks, 4 heads ViT with random weights (seeded).
inline std::shared_ptr<const VitEncoder> tiny_encoder(int num_registers = 0, uint64_t seed = 1) {
  VitConfig config;
  config.img_size = 32;
  config.patch_size = 8;
  config.embed_dim = 32;
  config.depth = 2;
  config.num_heads = 4;
  config.mlp_hidden_dim = 64;
  config.num_registers = num_registers;
  auto generator = at::detail::createCPUGenerator(seed);
  const auto random = [&](at::IntArrayRef shape, double scale) { return at::randn(shape, generator) * scale; };
  const int64_t d = config.embed_dim, h = config.mlp_hidden_dim;
  VitWeights weights;
  weights.patch_weight = random({d, 3, 8, 8}, 0.05);
  weights.patch_bias = random({d}, 0.1);
  weights.cls_token = random({1, 1, d}, 0.5);
  if (num_registers > 0) weights.reg_token = random({1, num_registers, d}, 0.5);
  weights.pos_embed = random({1, 1 + config.num_patches(), d}, 0.5);
  for (int b = 0; b < config.depth; ++b) {
    BlockWeights block;
    block.norm1_weight = 1 + random({d}, 0.1);
    block.norm1_bias = random({d}, 0.1);
    block.qkv_weight = random({3 * d, d}, 0.2);
    block.qkv_bias = random({3 * d}, 0.1);
    block.proj_weight = random({d, d}, 0.2);
    block.proj_bias = random({d}, 0.1);
    block.norm2_weight = 1 + random({d}, 0.1);
    block.norm2_bias = random({d}, 0.1);
    block.fc1_weight = random({h, d}, 0.2);
    block.fc1_bias = random({h}, 0.1);
    block.fc2_weight = random({d, h}, 0.2);
    block.fc2_bias = random({d}, 0.1);
    weights.blocks.push_back(block);
  }
  weights.norm_weight = 1 + random({d}, 0.1);
  weights.norm_bias = random({d}, 0.1);
  return std::make_shared<const VitEncoder>(config, weights, at::kFloat);
}

/// `n` 36x36 images of `classes` classes: class c is a colour, items add noise and a bright square.
class ColourDataset final : public Dataset {
 public:
  ColourDataset(int64_t n, int classes) : n_(n) {
    for (int c = 0; c < classes; ++c) names_.push_back("class" + std::to_string(c));
  }
  int64_t size() const override { return n_; }
  const std::vector<std::string>& class_names() const override { return names_; }
  int64_t label(int64_t index) const override { return index % static_cast<int64_t>(names_.size()); }
  ImageU8 load(int64_t index) const override {
    ImageU8 image;
    image.width = image.height = 36;
    image.pixels.resize(36 * 36 * 3);
    const int64_t c = label(index);
    for (int y = 0; y < 36; ++y) {
      for (int x = 0; x < 36; ++x) {
        for (int k = 0; k < 3; ++k) {
          int value = static_cast<int>((c * 70 + k * 40 * (c % 2 + 1)) % 256);
          value += static_cast<int>((index * 131 + y * 7 + x * 3 + k) % 41) - 20;
          if (x / 9 == index % 4 && y / 9 == (index / 4) % 4) value = 255 - value;
          image.pixels[(y * 36 + x) * 3 + k] = static_cast<uint8_t>(std::min(255, std::max(0, value)));
        }
      }
    }
    return image;
  }
  std::string item_name(int64_t index) const override { return "colour " + std::to_string(index); }
  std::string format() const override { return "colour"; }
  std::string describe() const override { return "colour test dataset"; }

 private:
  int64_t n_;
  std::vector<std::string> names_;
};

/// A fresh folder, removed with its contents at the end.
using ScratchDir = test::TempDir;

/// The token layout of the probe unit tests' synthetic features: width 8, [cls] + 2x2 patches, 2 heads.
inline TokenLayout tiny_layout() {
  TokenLayout layout;
  layout.embed_dim = 8;
  layout.num_prefix_tokens = 1;
  layout.grid_size = 2;
  layout.num_encoder_heads = 2;
  return layout;
}

/// Features held in memory, batched like the loader: epoch_order (shuffled per epoch when options.shuffle,
/// sharded by rank), only full global batches with drop_last.
class MemorySource final : public FeatureSource {
 public:
  MemorySource(FeatureMap features, at::Tensor labels, LoaderOptions options)
      : features_(std::move(features)), labels_(std::move(labels)), options_(options) {
    start_epoch(0);
  }
  /// One process; drop_last when shuffled (a training source).
  MemorySource(FeatureMap features, at::Tensor labels, int64_t batch, bool shuffle, uint64_t seed)
      : MemorySource(std::move(features), std::move(labels), options_for(batch, shuffle, seed)) {}
  void start_epoch(int64_t epoch) override {
    order_ = epoch_order(labels_.size(0), options_, epoch);
    trim_to_full_batches(order_, labels_.size(0), options_);
    position_ = 0;
  }
  std::optional<FeatureBatch> next() override {
    if (position_ >= num_items()) return std::nullopt;
    const int64_t end = std::min<int64_t>(position_ + options_.batch_size, num_items());
    const auto indices = at::tensor(std::vector<int64_t>(order_.begin() + position_, order_.begin() + end), at::kLong);
    position_ = end;
    FeatureBatch batch;
    for (const auto& [name, tensor] : features_) batch.features[name] = tensor.index_select(0, indices);
    batch.labels = labels_.index_select(0, indices);
    batch.indices = indices;
    return batch;
  }
  int64_t num_batches() const override { return (num_items() + options_.batch_size - 1) / options_.batch_size; }
  int64_t num_items() const override { return static_cast<int64_t>(order_.size()); }

 private:
  static LoaderOptions options_for(int64_t batch, bool shuffle, uint64_t seed) {
    LoaderOptions options;
    options.batch_size = batch;
    options.shuffle = shuffle;
    options.seed = seed;
    options.drop_last = shuffle;
    return options;
  }
  FeatureMap features_;
  at::Tensor labels_;
  LoaderOptions options_;
  std::vector<int64_t> order_;
  int64_t position_ = 0;
};

}  // namespace vitprobe::probe_test
