#pragma once
// The k-NN heads of `vitprobe probe`: nothing is trained, so they run once per run, not once per seed.
#include <nlohmann/json_fwd.hpp>

#include <vector>

#include "data/holdout_split.h"
#include "jobs/feature_setup.h"
#include "jobs/probe_job.h"

namespace vitprobe {

/// Classifies the val split by weighted k-NN over the train split's features (eval transform; cached when the
/// splits have caches) for every knn head of `specs`; every rank extracts its shard and the features are
/// all-gathered. With `holdout` the memory is the training items the heads fit on and k is chosen on the
/// held-out items, as the trained heads' rates are. Returns one result per knn head (probe/results.h), an empty
/// array when there is none.
nlohmann::json run_knn(const ProbeJobOptions& options, const FeatureContext& context, const std::vector<HeadSpec>& specs,
                       FeatureSplit& train, FeatureSplit& val, const FeatureExtractor& extractor,
                       Communicator& communicator, const HoldoutSplit* holdout = nullptr);

}  // namespace vitprobe
