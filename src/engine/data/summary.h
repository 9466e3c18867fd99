#pragma once
// What `vitprobe data` reports: a dataset's sizes, classes and per-class counts, and optionally a full
// pass through the loader that decodes every item and measures throughput.
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/loader.h"

namespace vitprobe {

/// {"dataset", "format", "split", "size", "num_classes", "image_size" ([w, h] or null), "limit", "seed",
///  "classes": [{"label", "name", "count"}]}.
nlohmann::json dataset_summary(const Dataset& dataset, const DatasetSpec& spec);

/// Loads every item once through a BatchLoader built from `transform` and `loader` (one epoch), with a
/// progress report when `show_progress`; returns {"loaded", "skipped", "skipped_items": [{"index", "name",
/// "error"}], "seconds", "images_per_s", "batch_shape", "dtype", "preset"}. Without skip_bad the first item that
/// fails to load stops the pass with its error.
nlohmann::json verify_dataset(const Dataset& dataset, const TransformOptions& transform, const LoaderOptions& loader,
                              bool show_progress);

}  // namespace vitprobe
