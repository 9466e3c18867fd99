#include "jobs/data_job.h"

#include <nlohmann/json.hpp>

#include "data/summary.h"

namespace vitprobe {

nlohmann::json run_data_job(const DataJobOptions& options) {
  auto dataset = open_dataset(options.spec);
  nlohmann::json summary = dataset_summary(*dataset, options.spec);
  if (options.verify) {
    TransformOptions transform;
    transform.preset = parse_transform_preset(options.preset);
    transform.preprocess = options.preprocess.resolve({}, 224);
    LoaderOptions loader = options.loader;
    loader.seed = options.spec.seed;
    loader.bfloat16 = options.dtype == "bf16";
    summary["verify"] = verify_dataset(*dataset, transform, loader, options.progress);
  }
  return summary;
}

}  // namespace vitprobe
