#pragma once
// `vitprobe probe`, `vitprobe evaluate` and `vitprobe extract`: train many probe heads on a frozen encoder
// and write results and heads; re-score saved heads; store cached features.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/loader.h"
#include "distributed/process_group.h"
#include "jobs/preprocess_settings.h"
#include "probe/optimizers.h"

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
  bool final_norm = true;         // apply the final LayerNorm (off = the official beyond_cls code)
  std::string cache_dir;          // cached features; empty: $VITPROBE_CACHE, else ~/.cache/vitprobe/features
  int64_t batch_size = 256;       // images per encoder forward and rank
  int workers = 2;                // image decoding threads
  bool progress = true;           // progress lines on stderr (rank 0 only)
  DistOptions dist;               // several ranks (distributed/process_group.h); unset: the environment, else one process
};

/// Options of `vitprobe probe`.
struct ProbeJobOptions {
  FeatureOptions features;
  std::string heads;                      // --heads list (probe/head_spec.h)
  std::vector<double> base_lrs;           // empty: DINOv2's 13-value grid (or blr when set)
  double blr = 0;                         // > 0: this base learning rate alone
  int epochs = 90;
  double warmup_epochs = 10;
  double min_lr = 0;
  int accum_iter = 1;
  OptimizerOptions optimizer;
  std::string mode = "online";            // online | cached
  std::vector<uint64_t> seeds = {0};
  int eval_every = 1;                     // evaluate every N epochs (and after the last)
  int head_threads = 1;                   // intra-op threads while the heads run (0: as --threads); their small
                                          // operations lose more to thread synchronisation than they gain on CPU
  std::vector<int> knn_k = {10, 20, 100, 200};
  double knn_temperature = 0.07;
  std::string out_dir;
  bool resume = false;
  int stop_after_epochs = 0;              // testing: stop after N epochs of this invocation, as if killed
};

/// Trains every (head, lr) pair for every seed and writes DIR/results.json, results.md, heads/ (per seed in
/// DIR/seed-S/ when several). Distributed: every rank trains on its shard of each global batch (batch size x
/// world size), evaluation and k-NN are sharded and summed, and rank 0 alone writes; --resume accepts another
/// world size when the global batch is the same. Returns the results document (aggregated over seeds when several); a run
/// stopped by stop_after_epochs returns {"status": "stopped", "completed_epochs": N}.
nlohmann::json run_probe_job(const ProbeJobOptions& options);

/// Options of `vitprobe evaluate`.
struct EvaluateJobOptions {
  std::string heads_dir;  // a run folder (DIR/heads/*) or one head folder
  std::string model;
  LoadOptions load;       // img_size 0: the heads' own
  std::string data;
  std::string split = "val";
  int64_t limit = 0;
  uint64_t limit_seed = 0;
  int64_t batch_size = 256;
  int workers = 2;
  std::string out;        // optional: write evaluate.json here
  bool progress = true;
};

/// Scores saved heads on a split with their own preprocessing, block and norm; returns the summary.
nlohmann::json run_evaluate_job(const EvaluateJobOptions& options);

/// Options of `vitprobe extract`.
struct ExtractJobOptions {
  FeatureOptions features;
  std::string heads = "cls,mean,abmilp";  // the features these heads read are stored
  std::vector<std::string> splits = {"train", "val"};
};

/// Stores the cached features of each split (reusing what is already cached); returns where they are.
nlohmann::json run_extract_job(const ExtractJobOptions& options);

/// The cache folder used when none is given: $VITPROBE_CACHE, else $XDG_CACHE_HOME/vitprobe/features, else
/// ~/.cache/vitprobe/features.
std::string default_cache_dir();

}  // namespace vitprobe
