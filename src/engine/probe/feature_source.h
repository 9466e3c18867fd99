#pragma once
// Where the trainer's feature batches come from: `online` runs the encoder on every loaded image batch (the
// paper's protocol, with the train transform), `cached` reads features that one earlier encoder pass stored
// (probe/feature_cache.h). Both visit items in the order data/loader.h's epoch_order gives, so a rank/world
// size split (issue 8's distributed sampler) applies to either.
#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "model/vit_encoder.h"
#include "probe/features.h"

namespace vitprobe {

/// Turns image batches into features: the encoder forward up to the probed block, the final norm if asked,
/// then compute_features. Immutable; safe to share.
class FeatureExtractor {
 public:
  /// `block` < 0 counts from the end (-1 = last block). `final_norm`: apply the encoder's final LayerNorm to
  /// the probed block's tokens (ignored when the model has none); off reproduces the official beyond_cls code.
  /// `oracle`: the second encoder whose last-block [cls] attention the "dino" feature reads; it runs on the same
  /// (already normalised) images, as beyond_cls models_vit.py:343 passes `orig_x`. Throws BadInput when "dino"
  /// is among `names` without an oracle, or when the oracle does not fit (check_oracle_fits).
  FeatureExtractor(std::shared_ptr<const VitEncoder> encoder, int block, bool final_norm, std::set<std::string> names,
                   std::shared_ptr<const VitEncoder> oracle = nullptr);

  /// Features of normalised images (B, 3, S, S) (float32 or bf16), on the encoder's device.
  FeatureMap operator()(const at::Tensor& images) const;

  const TokenLayout& layout() const { return layout_; }
  const std::set<std::string>& names() const { return names_; }
  int block() const { return block_; }
  bool final_norm() const { return final_norm_; }
  const VitEncoder& encoder() const { return *encoder_; }
  /// The oracle, or null.
  const std::shared_ptr<const VitEncoder>& oracle() const { return oracle_; }
  /// The same encoder, block, norm and oracle computing other features.
  FeatureExtractor with_names(std::set<std::string> names) const {
    return FeatureExtractor(encoder_, block_, final_norm_, std::move(names), oracle_);
  }

 private:
  std::shared_ptr<const VitEncoder> encoder_;
  int block_;
  bool final_norm_;
  std::set<std::string> names_;
  TokenLayout layout_;
  std::shared_ptr<const VitEncoder> oracle_;
};

/// The oracle's dino weights (B, n_patches) for normalised images (B, 3, S, S): a forward up to its last block
/// (no grad), then oracle_cls_attention of that block. On the oracle's device, float32.
at::Tensor oracle_weights(const VitEncoder& oracle, const at::Tensor& images);

/// A stream of feature batches, epoch by epoch.
class FeatureSource {
 public:
  virtual ~FeatureSource() = default;
  /// Starts `epoch` (its order is fixed by the seed and the epoch).
  virtual void start_epoch(int64_t epoch) = 0;
  /// The next batch, or nullopt at the end of the epoch.
  virtual std::optional<FeatureBatch> next() = 0;
  /// Batches per epoch.
  virtual int64_t num_batches() const = 0;
  /// Items per epoch.
  virtual int64_t num_items() const = 0;
};

/// Loads images with `transform`, runs the extractor on each batch.
class OnlineFeatures final : public FeatureSource {
 public:
  OnlineFeatures(const Dataset& dataset, ImageTransform transform, LoaderOptions options,
                 const FeatureExtractor& extractor);
  void start_epoch(int64_t epoch) override { loader_.start_epoch(epoch); }
  std::optional<FeatureBatch> next() override;
  int64_t num_batches() const override { return loader_.num_batches(); }
  int64_t num_items() const override { return loader_.num_items(); }

 private:
  BatchLoader loader_;
  const FeatureExtractor& extractor_;
};

}  // namespace vitprobe
