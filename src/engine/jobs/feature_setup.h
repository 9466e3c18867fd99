#pragma once
// What probe, evaluate and extract share: the encoder and data options, the loaded encoder with the
// transforms every split uses, each split's dataset with its feature cache, and the loaders (sharded over
// ranks in a distributed run).
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/loader.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "distributed/process_group.h"
#include "jobs/preprocess_settings.h"
#include "probe/feature_cache.h"

namespace vitprobe {

/// What the encoder and data give the heads; shared by probe, evaluate and extract.
struct FeatureOptions {
  std::string model;
  LoadOptions load;
  PreprocessSettings preprocess;  // of the eval transform; the train transform crops to the same size
  std::string data;               // --data SPEC
  std::string train_split = "train";
  std::string val_split = "val";
  int64_t train_limit = 0;        // > 0: a class-balanced subset (data/dataset.h)
  int64_t val_limit = 0;
  uint64_t limit_seed = 0;
  int block = -1;                 // probed block, negative from the end
  bool final_norm = false;        // apply the final LayerNorm (off: the official beyond_cls / EP code)
  std::string crop_sampler = "mae";  // train transform's RandomResizedCrop: mae (util/crop.py) | torchvision
  std::string oracle_model;       // --oracle-model: the checkpoint whose last-block [cls] attention the dino head reads
  std::string cache_dir;          // cached features; empty: $VITPROBE_CACHE, else ~/.cache/vitprobe/features
  int64_t batch_size = 256;       // images per encoder forward and rank
  int workers = 2;                // image decoding threads
  bool progress = true;           // progress lines on stderr (rank 0 only)
  DistOptions dist;               // several ranks (distributed/process_group.h); unset: the environment, else one process
};

/// The cache folder used when none is given: $VITPROBE_CACHE, else $XDG_CACHE_HOME/vitprobe/features, else
/// ~/.cache/vitprobe/features.
std::string default_cache_dir();

/// The loaded encoder and everything derived from it that every split shares.
struct FeatureContext {
  LoadedModel model;
  std::string model_sha256;
  TokenLayout layout;
  TransformOptions eval_transform, train_transform;
  at::Device device = at::kCPU;
  int block = 0;  // non-negative
  // The dino head's oracle (--oracle-model), null without one.
  std::shared_ptr<const VitEncoder> oracle;
  std::string oracle_sha256;
};

/// Loads the encoder (and the oracle, when --oracle-model is given) and resolves block and preprocessing;
/// throws BadInput for a missing --model or --data, a block out of range, a crop other than the model's input
/// size, or an oracle without [cls] or with another patch grid than the encoder's.
FeatureContext prepare_features(const FeatureOptions& options);

/// How the oracle is loaded: the model's dtype, device, backend, --img-size and --allow-nonfinite (it sees the
/// same images on the same device); its own key map (auto), architecture and head count (from its file).
LoadOptions oracle_load_options(const LoadOptions& model);

/// Loads an oracle for `encoder`: load_model with oracle_load_options, then check_oracle_fits.
std::shared_ptr<const VitEncoder> load_oracle(const std::string& file, const LoadOptions& model_load,
                                              const VitConfig& encoder);

/// Refuses (BadInput) a dino head without --oracle-model, and --oracle-model without a dino head.
void check_oracle_option(const std::vector<HeadSpec>& specs, const FeatureOptions& options);

/// The extractor of `names` for the context's encoder, block and oracle.
FeatureExtractor make_extractor(const FeatureContext& context, const FeatureOptions& options,
                                std::set<std::string> names);

/// One split's data, with its cached features in cached mode.
struct FeatureSplit {
  std::string name;
  int64_t limit = 0;
  std::unique_ptr<Dataset> dataset;
  std::unique_ptr<FeatureCache> cache;
};

/// The dataset of `split` under --data, --limit-seed and `limit`.
std::unique_ptr<Dataset> open_split(const FeatureOptions& options, const std::string& split, int64_t limit);

/// Builds (or reuses) the split's feature cache under cache_root, keyed by model, data, block, norm and
/// eval transform, and by the oracle's SHA-256 when the dino feature is among those extracted; every rank
/// extracts its shard.
void build_cache(FeatureSplit& split, const FeatureOptions& options, const FeatureContext& context,
                 const FeatureExtractor& extractor, Communicator& communicator);

/// The eval-transform loader of --batch and --workers (bf16 batches for --dtype bf16).
LoaderOptions eval_loader(const FeatureOptions& options);

/// `loader` restricted to this rank's shard.
LoaderOptions sharded(LoaderOptions loader, const Communicator& communicator);

/// --cache-dir, else default_cache_dir().
std::string cache_root(const FeatureOptions& options);

/// The folders a run with `options` reads (the dataset's and the feature cache), which --out must stay out of.
std::vector<std::string> input_folders(const FeatureOptions& options);

/// Seconds from `start` to now.
double seconds_since(std::chrono::steady_clock::time_point start);

/// The versions results record: vitprobe and libtorch.
nlohmann::json versions_json();

}  // namespace vitprobe
