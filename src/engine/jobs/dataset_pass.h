#pragma once
// One pass of a frozen encoder over a dataset, batch by batch, with a progress bar: the loop shared by
// attn-stats and embed.
#include <functional>
#include <string>

#include "checkpoint/loader.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "jobs/preprocess_settings.h"
#include "model/vit_encoder.h"

namespace vitprobe {

/// The evaluation preprocessing of `model` under the user's settings (flags, then the checkpoint's
/// metadata, then the defaults); throws BadInput when the crop differs from the model's input size.
PreprocessOptions model_preprocess(const LoadedModel& model, const PreprocessSettings& settings);

/// How a pass loads and reports.
struct DatasetPassOptions {
  int64_t batch_size = 16;
  int num_workers = 2;
  bool progress = true;        // a progress bar (or log lines) on stderr
  std::string progress_label;  // e.g. "attn-stats mae"
  int rank = 0, world_size = 1; // this rank's shard: items rank, rank + world_size, ... (data/loader.h)
};

/// Runs every item of `dataset` (of this rank's shard), in order, through `model` with the eval transform `preprocess`, and calls
/// `consume(batch, result)` once per batch (the result may be modified, e.g. to release memory early).
void run_dataset_pass(const LoadedModel& model, const Dataset& dataset, const PreprocessOptions& preprocess,
                      const ForwardRequest& request, const DatasetPassOptions& options,
                      const std::function<void(const Batch&, ForwardResult&)>& consume);

/// Parses a --model/--label pair list: one label per model, or none (then each model's file stem, made
/// unique with a number); throws BadInput for a count mismatch or a repeated label.
std::vector<std::string> model_labels(const std::vector<std::string>& models, const std::vector<std::string>& labels);

}  // namespace vitprobe
