#include "data/summary.h"

#include <ATen/core/Tensor.h>

#include <chrono>

#include "common/progress.h"

namespace vitprobe {

nlohmann::json dataset_summary(const Dataset& dataset, const DatasetSpec& spec) {
  nlohmann::json summary;
  summary["dataset"] = dataset.describe();
  summary["spec"] = spec.text;
  summary["format"] = dataset.format();
  summary["split"] = is_val_split(spec.split) ? "val" : "train";
  summary["size"] = dataset.size();
  summary["num_classes"] = dataset.num_classes();
  const auto size = dataset.image_size();
  summary["image_size"] = size ? nlohmann::json::array({size->first, size->second}) : nlohmann::json();
  summary["limit"] = spec.limit;
  summary["seed"] = spec.seed;
  const auto counts = class_counts(dataset);
  nlohmann::json classes = nlohmann::json::array();
  for (size_t label = 0; label < counts.size(); ++label) {
    classes.push_back({{"label", label}, {"name", dataset.class_names()[label]}, {"count", counts[label]}});
  }
  summary["classes"] = classes;
  return summary;
}

nlohmann::json verify_dataset(const Dataset& dataset, const TransformOptions& transform, const LoaderOptions& loader,
                              bool show_progress) {
  BatchLoader batches(dataset, ImageTransform(transform), loader);
  batches.start_epoch(0);
  ProgressOptions progress_options;
  progress_options.enabled = show_progress;
  Progress progress("verify " + dataset.describe(), batches.num_items(), progress_options);
  const auto start = std::chrono::steady_clock::now();
  int64_t loaded = 0;
  std::vector<int64_t> batch_shape;
  while (auto batch = batches.next()) {
    loaded += batch->images.size(0);
    if (batch_shape.empty()) batch_shape = batch->images.sizes().vec();
    progress.advance(batch->images.size(0));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finish();

  nlohmann::json result;
  result["preset"] = transform.preset == TransformPreset::Eval ? "eval" : "train";
  result["dtype"] = loader.bfloat16 ? "bf16" : "fp32";
  result["batch_shape"] = batch_shape;
  result["workers"] = loader.num_workers;
  result["loaded"] = loaded;
  result["skipped"] = batches.skipped().size();
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& item : batches.skipped()) {
    skipped.push_back({{"index", item.index}, {"name", item.name}, {"error", item.error}});
  }
  result["skipped_items"] = skipped;
  result["seconds"] = seconds;
  result["images_per_s"] = seconds > 0 ? loaded / seconds : 0.0;
  return result;
}

}  // namespace vitprobe
