#pragma once
// Many heads in one pass: every (head, base learning rate) pair of a run is trained from the same feature
// batch — one encoder forward per batch (or one cached read) feeds all of them, as in DINOv2's linear
// evaluation. Each pair has its own parameters, BatchNorm statistics and optimizer state. The loss is the sum
// of the heads' cross-entropies; since the features are frozen, the heads' graphs are disjoint and each
// head's backward is run on its own (same gradients as one backward of the sum, less memory, and a time per
// head). Gradients accumulate over `accum_iter` micro-batches before each optimizer step; the learning rate
// follows MAE's per-iteration warm-up + half-cosine schedule, set at the first micro-batch of each step.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "probe/feature_source.h"
#include "probe/heads.h"
#include "probe/optimizers.h"

namespace vitprobe {

/// The default base learning-rate grid of an optimizer (lars | sgd | adamw): 13 log-spaced values (1, 2, 5 per
/// decade) that bracket the official rate by two decades or more on both sides, so that a head's best rate is
/// found inside the grid rather than at its edge:
///   lars   1e-3 .. 10   (MAE / beyond_cls: blr 0.1)
///   sgd    1e-3 .. 10   (beyond_cls passes the same blr 0.1 to SGD; DINOv2's 1e-5 .. 0.1 was made for
///                        un-normalised features, here a BatchNorm comes first)
///   adamw  1e-6 .. 1e-2 (attentive probes train at about 1e-4)
/// Throws BadInput for another optimizer.
std::vector<double> default_learning_rate_grid(const std::string& optimizer);

/// The training protocol (MAE linear probing by default).
struct TrainerOptions {
  int epochs = 90;
  double warmup_epochs = 10;
  double min_lr = 0.0;
  int64_t batch_size = 256;  // items per micro-batch and rank
  int accum_iter = 1;        // micro-batches per optimizer step
  int world_size = 1;        // ranks; effective batch = batch_size * accum_iter * world_size
  std::vector<double> base_lrs = {0.1};  // each scaled by effective batch / 256
  OptimizerOptions optimizer;
  uint64_t seed = 0;         // head initialisation (the data order is the loader's business)
  ClassifierInit classifier_init = ClassifierInit::PyTorch;
  int head_threads = 0;      // > 0: intra-op threads while the heads run (their small operations can lose more
                             // to thread synchronisation than they gain; the encoder keeps the global setting)

  int64_t effective_batch() const { return batch_size * accum_iter * world_size; }
};

/// Validation accuracy after one epoch (in %).
struct EpochMetrics {
  int64_t epoch = 0;
  double top1 = 0, top5 = 0;
};

/// One (head, base learning rate) pair and its history.
struct HeadRun {
  HeadSpec spec;
  double base_lr = 0;  // as given
  double peak_lr = 0;  // base_lr * effective batch / 256
  std::unique_ptr<ProbeHead> head;
  std::unique_ptr<Optimizer> optimizer;
  std::vector<double> train_loss;    // mean cross-entropy per epoch
  std::vector<EpochMetrics> val;     // per evaluated epoch
  std::vector<EpochMetrics> holdout; // per evaluated epoch, when a held-out part chooses (else empty)
  // The chosen epoch: the best held-out top-1 (or the best validation top-1 when no held-out part is scored), the earliest
  // on ties; best_top1/top5 are the validation accuracies at that epoch, selection_top1 the chooser's.
  int64_t best_epoch = -1;
  double best_top1 = -1, best_top5 = -1;
  double selection_top1 = -1;
  std::vector<NamedTensor> best_state;  // head state at the chosen epoch (CPU copies)
  double seconds = 0;                   // forward, backward and updates of this pair

  /// "abmilp@0.001": the head name and its base learning rate.
  std::string name() const;
};

/// Trains and evaluates all (head, lr) pairs of a run.
class ProbeTrainer {
 public:
  /// One pair per spec (knn excluded) and base lr; pairs of the same head start from the same weights
  /// (seeded by options.seed and the head's position). Throws BadInput for an empty grid or unusable head.
  /// With a distributed `communicator` (distributed/communicator.h) every rank trains on its shard of each global
  /// batch: the heads' BatchNorm uses statistics of the global batch, gradients are averaged over ranks in
  /// buckets before every step, and losses and evaluation counts are summed, so all ranks take identical
  /// steps and equal a single process given the whole global batch.
  ProbeTrainer(const std::vector<HeadSpec>& specs, const TokenLayout& layout, int64_t num_classes,
               TrainerOptions options, const at::Device& device, Communicator* communicator = nullptr);

  /// Trains one epoch over `source` (started here for `epoch`); `on_batch(items)` is called after each batch.
  void train_epoch(FeatureSource& source, int64_t epoch, const std::function<void(int64_t)>& on_batch = {});
  /// Scores every pair on `val` (and on `holdout` when given; BatchNorm in eval mode), records the metrics of
  /// `epoch` and keeps a copy of each pair's state when its selection top-1 (held-out when `holdout` is given,
  /// else validation) improves.
  void evaluate(FeatureSource& val, FeatureSource* holdout, int64_t epoch,
                const std::function<void(int64_t)>& on_batch = {});
  /// Scores on `val` alone, which then also chooses (--select-on val).
  void evaluate(FeatureSource& val, int64_t epoch, const std::function<void(int64_t)>& on_batch = {}) {
    evaluate(val, nullptr, epoch, on_batch);
  }

  std::vector<HeadRun>& runs() { return runs_; }
  const std::vector<HeadRun>& runs() const { return runs_; }
  const TrainerOptions& options() const { return options_; }
  /// The features the heads read.
  std::set<std::string> required_features() const;

  /// Everything needed to continue after the last completed epoch: tensors (parameters, buffers, optimizer
  /// state, best snapshots) and JSON (histories). restore() takes them back; `source` names the file.
  std::vector<NamedTensor> checkpoint_tensors() const;
  nlohmann::json checkpoint_metadata() const;
  void restore(const std::map<std::string, at::Tensor>& tensors, const nlohmann::json& metadata, const std::string& source);

 private:
  void step_optimizers(const std::vector<double>& learning_rates);
  /// Distributed runs: the poolings' own running statistics (aim's token BatchNorm, which, as in the EP
  /// repository, sees each rank's batch only) become rank 0's on every rank, as DDP's broadcast_buffers makes
  /// them, so that every rank scores, saves and resumes the same head.
  void share_pooling_buffers();
  /// Top-1 / top-5 of every pair on `source`, summed over ranks.
  std::vector<EpochMetrics> score(FeatureSource& source, int64_t epoch, const std::function<void(int64_t)>& on_batch);

  TrainerOptions options_;
  TokenLayout layout_;
  at::Device device_;
  Communicator* communicator_;
  std::vector<HeadRun> runs_;
};

}  // namespace vitprobe
