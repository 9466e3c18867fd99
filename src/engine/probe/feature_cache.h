#pragma once
// Cached features: one encoder pass per split with the eval transform, stored as bfloat16 and memory-mapped,
// so that a probe can train for many epochs without touching the encoder, and later runs reuse the pass.
//
// Layout of one cache entry, ROOT/<key digest>/ (the digest is the SHA-256 of the key's JSON, see below):
//   manifest.json     the key, num_items, num_classes, class names, per feature its file(s), row shape and
//                     the SHA-256 of each file ("sha256", one per shard), and "labels_sha256"
//   labels.i64        int64 little-endian labels (num_items)
//   <feature>.bf16    bfloat16 little-endian rows (num_items, row shape...), ':' in names written as '_'
//   <feature>.R-of-W.bf16  instead, when W ranks extracted the feature together (issue 8): rank R's rows,
//                     items R, R + W, R + 2W, ... in that order; the manifest's "shards" says W. Any world size
//                     reads any entry: row i lives in shard i % W at position i / W.
// Features are written under temporary names and renamed when complete; the manifest is rewritten last, so
// a killed extraction leaves no entry that claims features it does not have. Features missing from an
// entry are added by the next run that needs them. Opening an entry verifies every file's SHA-256 and that
// the features are finite (issue 18): a changed or damaged cache is an error naming the file, never trusted.
// Temporaries of killed extractions (*.tmp.<pid> of a dead pid) are removed when the next one starts.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "distributed/communicator.h"
#include "probe/feature_source.h"

namespace vitprobe {

/// Everything that changes the features of an item; equal keys give equal features.
struct FeatureCacheKey {
  std::string model_sha256;
  int img_size = 0;
  std::string dtype;        // encoder compute dtype
  std::string data;         // --data spec text
  std::string split;
  int64_t limit = 0;
  uint64_t limit_seed = 0;
  int block = 0;            // non-negative block index
  bool final_norm = true;
  std::string transform;    // describe_transform() of the eval transform
  std::string oracle_sha256;  // the dino oracle's checkpoint when the dino feature is extracted; empty: none
                              // (and left out of to_json, so keys without an oracle stay as they were)

  nlohmann::json to_json() const;
  /// SHA-256 of to_json().dump() (hex), the entry's folder name.
  std::string digest() const;
};

/// "eval resize=256 crop=224 interpolation=bicubic mean=... std=..." — the parts of a transform that matter.
std::string describe_transform(const TransformOptions& options);

/// The cached features of one split, memory-mapped read-only.
class FeatureCache {
 public:
  ~FeatureCache();
  FeatureCache(const FeatureCache&) = delete;
  FeatureCache& operator=(const FeatureCache&) = delete;

  /// Opens ROOT/<digest> when it exists and holds every feature in `names`; null otherwise. Throws BadInput
  /// when the entry is damaged (a file whose size or SHA-256 differs from the manifest's, non-finite features).
  static std::unique_ptr<FeatureCache> open(const std::string& root, const FeatureCacheKey& key,
                                            const std::set<std::string>& names);

  /// Runs `extractor` over `dataset` with the eval `transform` (in dataset order) and stores the features of
  /// `names` that the entry lacks; returns the opened entry. `show_progress` reports on stderr. With a
  /// distributed `communicator` every rank extracts and writes its shard (ROOT must be shared by the ranks),
  /// rank 0 writes the labels and the manifest, and every rank returns the opened entry.
  static std::unique_ptr<FeatureCache> build(const std::string& root, const FeatureCacheKey& key,
                                             const std::set<std::string>& names, const Dataset& dataset,
                                             const ImageTransform& transform, const FeatureExtractor& extractor,
                                             LoaderOptions loader, bool show_progress,
                                             Communicator& communicator = single_process());

  int64_t size() const { return num_items_; }
  int64_t num_classes() const { return num_classes_; }
  const std::string& folder() const { return folder_; }
  /// Labels (N) int64.
  const at::Tensor& labels() const { return labels_; }
  /// The stored features.
  std::set<std::string> names() const;
  /// Rows `indices` (int64, any order) of every feature in `names`, as float32 on `device`.
  FeatureMap gather(const at::Tensor& indices, const std::set<std::string>& names, const at::Device& device) const;

 private:
  FeatureCache() = default;
  std::string folder_;
  int64_t num_items_ = 0;
  int64_t num_classes_ = 0;
  at::Tensor labels_;
  std::map<std::string, std::vector<at::Tensor>> features_;  // bf16 views of the mapped files, one per shard
  std::vector<std::shared_ptr<void>> mappings_;      // keep the files mapped while the views live
};

/// Batches of cached features in epoch_order (shuffled per epoch when options.shuffle, sharded by rank).
/// With `items` given, only those cache rows are visited (a part of the split, e.g. the held-out items); the
/// batches' indices are then positions in `items`, as a subset view's loader gives them.
class CachedFeatures final : public FeatureSource {
 public:
  CachedFeatures(const FeatureCache& cache, std::set<std::string> names, LoaderOptions options, at::Device device,
                 std::vector<int64_t> items = {});
  void start_epoch(int64_t epoch) override;
  std::optional<FeatureBatch> next() override;
  int64_t num_batches() const override;
  int64_t num_items() const override { return static_cast<int64_t>(order_.size()); }

 private:
  const FeatureCache& cache_;
  std::set<std::string> names_;
  LoaderOptions options_;
  at::Device device_;
  std::vector<int64_t> items_;  // cache rows visited; empty: all
  std::vector<int64_t> order_;
  int64_t position_ = 0;
};

}  // namespace vitprobe
