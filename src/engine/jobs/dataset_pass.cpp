#include "jobs/dataset_pass.h"

#include <filesystem>
#include <set>

#include "common/errors.h"
#include "common/progress.h"

namespace vitprobe {

PreprocessOptions model_preprocess(const LoadedModel& model, const PreprocessSettings& settings) {
  const auto& config = model.encoder->config();
  const auto preprocess = settings.resolve(model.report.metadata, config.img_size, model.report.file);
  if (preprocess.crop != config.img_size) {
    throw BadInput(model.report.file + ": --crop " + std::to_string(preprocess.crop) +
                   " does not match the model's input size " + std::to_string(config.img_size) +
                   " (use --img-size to resample the position embeddings)");
  }
  return preprocess;
}

void run_dataset_pass(const LoadedModel& model, const Dataset& dataset, const PreprocessOptions& preprocess,
                      const ForwardRequest& request, const DatasetPassOptions& options,
                      const std::function<void(const Batch&, ForwardResult&)>& consume) {
  TransformOptions transform;
  transform.preset = TransformPreset::Eval;
  transform.preprocess = preprocess;
  LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.num_workers = options.num_workers;
  loader_options.rank = options.rank;
  loader_options.world_size = options.world_size;
  loader_options.pin_memory = model.encoder->weights().patch_weight.is_cuda();
  BatchLoader loader(dataset, ImageTransform(transform), loader_options);
  ProgressOptions progress_options;
  progress_options.enabled = options.progress && options.rank == 0;
  Progress progress(options.progress_label, loader.num_items(), progress_options);
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    ForwardResult result = model.encoder->forward(batch->images, request);
    consume(*batch, result);
    progress.advance(batch->images.size(0));
  }
  progress.finish();
}

std::vector<std::string> model_labels(const std::vector<std::string>& models, const std::vector<std::string>& labels) {
  if (!labels.empty() && labels.size() != models.size()) {
    throw BadInput("--label given " + std::to_string(labels.size()) + " times for " + std::to_string(models.size()) +
                   " --model: give one label per model, or none");
  }
  std::vector<std::string> chosen;
  std::set<std::string> seen;
  for (size_t i = 0; i < models.size(); ++i) {
    std::string label = labels.empty() ? std::filesystem::path(models[i]).stem().string() : labels[i];
    if (label.empty()) throw BadInput("--label: empty label for model " + models[i]);
    if (labels.empty()) {
      const std::string base = label;
      for (int n = 2; seen.count(label); ++n) label = base + "-" + std::to_string(n);
    } else if (seen.count(label)) {
      throw BadInput("--label '" + label + "' is given twice; labels name the lines of the figures");
    }
    seen.insert(label);
    chosen.push_back(label);
  }
  return chosen;
}

}  // namespace vitprobe
