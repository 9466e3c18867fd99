#include "jobs/probe_knn.h"

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "probe/knn.h"
#include "probe/results.h"

namespace vitprobe {

namespace {

// All features of `names` for every item of a source (every rank's shard), in dataset order (for k-NN).
FeatureMap collect(FeatureSource& source, const std::set<std::string>& names, int64_t total, at::Tensor& labels,
                   Communicator& communicator) {
  std::map<std::string, std::vector<at::Tensor>> parts;
  std::vector<at::Tensor> label_parts, index_parts;
  source.start_epoch(0);
  while (auto batch = source.next()) {
    for (const auto& name : names) parts[name].push_back(batch->features.at(name));
    label_parts.push_back(batch->labels);
    index_parts.push_back(batch->indices);
  }
  if (label_parts.empty()) throw BadInput("k-NN: a split gives no items to this rank (more ranks than items?)");
  const auto indices = at::cat(index_parts);
  FeatureMap out;
  for (auto& [name, tensors] : parts) out[name] = all_gather_rows(communicator, at::cat(tensors), indices, total);
  labels = all_gather_rows(communicator, at::cat(label_parts), indices, total);
  return out;
}

at::Tensor knn_feature(const FeatureMap& features, const HeadSpec& spec) {
  if (spec.knn_feature == "cls+mean") return at::cat({features.at("cls"), features.at("mean")}, 1);
  return features.at(spec.knn_feature);
}

}  // namespace

nlohmann::json run_knn(const ProbeJobOptions& options, const FeatureContext& context, const std::vector<HeadSpec>& specs,
                       FeatureSplit& train, FeatureSplit& val, const FeatureExtractor& extractor,
                       Communicator& communicator, const HoldoutSplit* holdout) {
  std::vector<HeadSpec> knn_specs;
  for (const auto& spec : specs) {
    if (spec.kind == HeadKind::Knn) knn_specs.push_back(spec);
  }
  if (knn_specs.empty()) return nlohmann::json::array();
  const auto names = required_features(knn_specs);
  LoaderOptions loader = sharded(eval_loader(options.features), communicator);
  std::unique_ptr<FeatureSource> train_source, val_source;
  const FeatureExtractor knn_extractor = extractor.with_names(names);
  if (train.cache) {
    train_source = std::make_unique<CachedFeatures>(*train.cache, names, loader, context.device);
    val_source = std::make_unique<CachedFeatures>(*val.cache, names, loader, context.device);
  } else {
    train_source = std::make_unique<OnlineFeatures>(*train.dataset, ImageTransform(context.eval_transform), loader, knn_extractor);
    val_source = std::make_unique<OnlineFeatures>(*val.dataset, ImageTransform(context.eval_transform), loader, knn_extractor);
  }
  at::Tensor train_labels, val_labels;
  // Every rank computes its shard; all-gathered, every rank classifies the same full matrices.
  const auto train_features = collect(*train_source, names, train.dataset->size(), train_labels, communicator);
  const auto val_features = collect(*val_source, names, val.dataset->size(), val_labels, communicator);
  nlohmann::json results = nlohmann::json::array();
  const int64_t num_classes = train.dataset->num_classes();
  for (const auto& spec : knn_specs) {
    const auto memory = knn_feature(train_features, spec);
    if (!holdout) {
      const auto accuracies = knn_classify(memory, train_labels, knn_feature(val_features, spec), val_labels, num_classes,
                                           options.knn_k, options.knn_temperature);
      results.push_back(knn_head_results(spec, accuracies, options.knn_temperature));
      continue;
    }
    const auto fit = at::tensor(holdout->fit, at::kLong).to(memory.device());
    const auto held = at::tensor(holdout->holdout, at::kLong).to(memory.device());
    const auto fit_memory = memory.index_select(0, fit);
    const auto fit_labels = train_labels.index_select(0, fit);
    const auto held_accuracies = knn_classify(fit_memory, fit_labels, memory.index_select(0, held),
                                              train_labels.index_select(0, held), num_classes, options.knn_k,
                                              options.knn_temperature);
    const auto val_accuracies = knn_classify(fit_memory, fit_labels, knn_feature(val_features, spec), val_labels,
                                             num_classes, options.knn_k, options.knn_temperature);
    results.push_back(knn_head_results(spec, val_accuracies, options.knn_temperature, held_accuracies));
  }
  return results;
}

}  // namespace vitprobe
