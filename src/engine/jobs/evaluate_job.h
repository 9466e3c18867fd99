#pragma once
// `vitprobe evaluate`: re-score the heads a probe run saved, each with its own preprocessing, block and norm.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

#include "checkpoint/loader.h"

namespace vitprobe {

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

}  // namespace vitprobe
