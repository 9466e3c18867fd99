#pragma once
// `vitprobe probe`: train many probe heads x learning rates on a frozen encoder in one pass and write results
// and heads.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "jobs/feature_setup.h"
#include "probe/head_spec.h"  // the --heads syntax (head_syntax_help)
#include "probe/optimizers.h"
#include "probe/results.h"    // results_markdown, how the CLI prints the results document

namespace vitprobe {

/// Options of `vitprobe probe`.
struct ProbeJobOptions {
  FeatureOptions features;
  std::string heads;                      // --heads list (probe/head_spec.h)
  std::vector<double> base_lrs;           // empty: the optimizer's default grid (probe/trainer.h), or blr when set
  double blr = 0;                         // > 0: this base learning rate alone
  std::string select_on = "train-holdout";  // train-holdout | val: what chooses each head's rate and epoch
  double holdout_fraction = 0.1;          // of the training split, stratified by class (train-holdout)
  uint64_t holdout_seed = 0;              // which items are held out (the same for every --seeds entry)
  std::string head_init = "pytorch";      // pytorch (nn.Linear) | mae (N(0, 0.01), bias 0)
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

}  // namespace vitprobe
