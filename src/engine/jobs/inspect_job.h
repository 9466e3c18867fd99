#pragma once
// `vitprobe inspect`: what a checkpoint holds and how vitprobe reads it.
#include <nlohmann/json_fwd.hpp>

#include <string>

#include "checkpoint/loader.h"

namespace vitprobe {

/// Options of one inspect job; the CLI fills them.
struct InspectJobOptions {
  std::string model;
  LoadOptions load;
};

/// Loads the model and describes it: file, format, key map, where the encoder was found, the inferred
/// architecture, parameter count, classifier, ignored keys, skipped entries, notes and metadata.
nlohmann::json run_inspect_job(const InspectJobOptions& options);

}  // namespace vitprobe
