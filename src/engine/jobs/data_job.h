#pragma once
// `vitprobe data`: what a --data spec holds (sizes, classes, per-class counts); with verify, one pass of the
// loader over every item, reporting bad files and throughput.
#include <nlohmann/json_fwd.hpp>

#include <string>

#include "data/dataset.h"
#include "data/loader.h"
#include "jobs/preprocess_settings.h"

namespace vitprobe {

/// Options of one data job; the CLI fills them.
struct DataJobOptions {
  DatasetSpec spec;
  bool verify = false;             // decode and transform every item with the loader
  LoaderOptions loader;            // of the verify pass (its seed is the spec's)
  std::string preset = "eval";     // transform preset of the verify pass: eval | train
  std::string dtype = "fp32";      // batch dtype of the verify pass: fp32 | bf16
  PreprocessSettings preprocess;   // of the verify pass; unset fields: the defaults for 224 px
  bool progress = true;            // progress report of the verify pass on stderr
};

/// The dataset summary (data/summary.h: dataset_summary), with the verify_dataset report under "verify"
/// when options.verify is set.
nlohmann::json run_data_job(const DataJobOptions& options);

}  // namespace vitprobe
