#include "jobs/extract_job.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "jobs/feature_setup.h"

namespace vitprobe {

nlohmann::json run_extract_job(const ExtractJobOptions& given) {
  ExtractJobOptions options = given;  // each rank of a distributed run on its own GPU (LOCAL_RANK)
  const DistOptions dist = rank_dist_options(options.features.dist, options.features.load.device);
  const auto specs = parse_head_list(options.heads);
  check_oracle_option(specs, options.features);
  const auto communicator = connect(dist);
  const FeatureContext context = prepare_features(options.features);
  for (const auto& spec : specs) check_head_fits(spec, context.layout);
  const FeatureExtractor extractor = make_extractor(context, options.features, required_features(specs));
  nlohmann::json splits = nlohmann::json::object();
  for (const auto& name : options.splits) {
    const bool is_val = is_val_split(name);
    FeatureSplit split{name, is_val ? options.features.val_limit : options.features.train_limit, nullptr, nullptr};
    split.dataset = open_split(options.features, split.name, split.limit);
    const auto start = std::chrono::steady_clock::now();
    build_cache(split, options.features, context, extractor, *communicator);
    splits[name] = {{"folder", split.cache->folder()}, {"items", split.cache->size()}, {"features", split.cache->names()},
                    {"seconds", seconds_since(start)}};
  }
  return {{"model", options.features.model}, {"model_sha256", context.model_sha256},
          {"cache_dir", cache_root(options.features)}, {"block", context.block},
          {"final_norm", options.features.final_norm}, {"world_size", communicator->world_size()}, {"splits", splits},
          {"oracle_sha256", context.oracle_sha256.empty() ? nlohmann::json() : nlohmann::json(context.oracle_sha256)}};
}

}  // namespace vitprobe
