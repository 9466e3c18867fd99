#pragma once
// `vitprobe extract`: store the cached features that `vitprobe probe --features cached` reads.
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

#include "jobs/feature_setup.h"
#include "probe/head_spec.h"  // the --heads syntax (head_syntax_help)

namespace vitprobe {

/// Options of `vitprobe extract`.
struct ExtractJobOptions {
  FeatureOptions features;
  std::string heads = "cls,mean,abmilp";  // the features these heads read are stored
  std::vector<std::string> splits = {"train", "val"};
};

/// Stores the cached features of each split (reusing what is already cached); returns where they are.
nlohmann::json run_extract_job(const ExtractJobOptions& options);

}  // namespace vitprobe
