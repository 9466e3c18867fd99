#pragma once
// The k-NN heads of `vitprobe probe`: nothing is trained, so they run once per run, not once per seed.
#include <nlohmann/json_fwd.hpp>

#include <vector>

#include "jobs/feature_setup.h"
#include "jobs/probe_job.h"

namespace vitprobe {

/// Classifies the val split by weighted k-NN over the train split's features (eval transform; cached when the
/// splits have caches) for every knn head of `specs`; every rank extracts its shard and the features are
/// all-gathered. Returns one result per knn head (probe/results.h), an empty array when there is none.
nlohmann::json run_knn(const ProbeJobOptions& options, const FeatureContext& context, const std::vector<HeadSpec>& specs,
                       FeatureSplit& train, FeatureSplit& val, const FeatureExtractor& extractor,
                       Communicator& communicator);

}  // namespace vitprobe
