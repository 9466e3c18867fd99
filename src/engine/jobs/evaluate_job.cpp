#include "jobs/evaluate_job.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>

#include "common/errors.h"
#include "common/progress.h"
#include "data/loader.h"
#include "io/atomic_file.h"
#include "io/output_folder.h"
#include "jobs/feature_setup.h"
#include "probe/feature_source.h"
#include "probe/file_hash.h"
#include "probe/head_io.h"

namespace vitprobe {

namespace fs = std::filesystem;

namespace {

// The oracle a dino head's config records (file, SHA-256); BadInput when the file is gone or has changed.
std::pair<std::string, std::string> recorded_oracle(const LoadedHead& head) {
  const auto& oracle = head.config.value("oracle", nlohmann::json());
  if (!oracle.is_object() || !oracle.value("model", nlohmann::json()).is_string() ||
      !oracle.value("model_sha256", nlohmann::json()).is_string()) {
    throw BadInput(head.folder + "/config.json: the dino head records no oracle (\"oracle\": {\"model\", \"model_sha256\"})");
  }
  const auto file = oracle.at("model").get<std::string>();
  const auto sha = oracle.at("model_sha256").get<std::string>();
  if (!fs::is_regular_file(file)) {
    throw BadInput(head.folder + ": the oracle the dino head was trained with, " + file + ", is gone");
  }
  if (sha256_file(file) != sha) {
    throw BadInput(head.folder + ": the oracle " + file + " has changed since the dino head was trained (SHA-256 " +
                   sha.substr(0, 12) + "... recorded)");
  }
  return {file, sha};
}

}  // namespace

nlohmann::json run_evaluate_job(const EvaluateJobOptions& options) {
  if (options.model.empty()) throw BadInput("--model is required");
  if (options.data.empty()) throw BadInput("--data is required");
  // --out (optional) is checked and locked before any work, and written all-or-nothing.
  std::optional<OutputFolder> output;
  if (!options.out.empty()) output.emplace(options.out, std::vector<std::string>{options.heads_dir, dataset_folder(options.data)});
  const auto folders = find_head_folders(options.heads_dir);
  std::vector<LoadedHead> heads;
  for (const auto& folder : folders) heads.push_back(load_head(folder, at::Device(options.load.device)));
  const auto& first = heads.front().config.at("encoder");
  for (const auto& head : heads) {
    const auto& encoder = head.config.at("encoder");
    for (const char* key : {"img_size", "preprocess", "dtype"}) {
      if (encoder.at(key) != first.at(key)) {
        throw BadInput(head.folder + ": encoder setting '" + key + "' differs from " + heads.front().folder +
                       " (evaluate heads of one run at a time)");
      }
    }
  }
  LoadOptions load = options.load;
  if (load.img_size == 0) load.img_size = first.at("img_size");
  if (load.dtype == "fp32") load.dtype = first.value("dtype", "fp32");
  const auto model = load_model(options.model, load);
  const auto sha = sha256_file(options.model);
  const auto layout = TokenLayout::of(model.encoder->config());
  DatasetSpec spec;
  spec.text = options.data;
  spec.split = options.split;
  spec.limit = options.limit;
  spec.seed = options.limit_seed;
  const auto dataset = open_dataset(spec);
  const auto& pre = first.at("preprocess");
  TransformOptions transform;
  transform.preset = TransformPreset::Eval;
  transform.preprocess.resize = pre.at("resize");
  transform.preprocess.crop = pre.at("crop");
  transform.preprocess.interpolation = pre.at("interpolation") == "bilinear" ? Interpolation::Bilinear : Interpolation::Bicubic;
  for (int c = 0; c < 3; ++c) {
    transform.preprocess.mean[c] = pre.at("mean")[c];
    transform.preprocess.std[c] = pre.at("std")[c];
  }
  nlohmann::json notes = nlohmann::json::array();
  for (auto& head : heads) {
    const auto& encoder = head.config.at("encoder");
    if (layout_to_json(layout) != layout_to_json(head.head->layout())) {
      throw BadInput(head.folder + ": the head was trained on another token layout than " + options.model + " gives");
    }
    if (head.head->num_classes() != dataset->num_classes()) {
      throw BadInput(head.folder + ": the head has " + std::to_string(head.head->num_classes()) + " classes, " +
                     options.data + " has " + std::to_string(dataset->num_classes()));
    }
    const auto trained_names = head.config.value("class_names", std::vector<std::string>());
    for (size_t c = 0; c < trained_names.size() && c < dataset->class_names().size(); ++c) {
      if (trained_names[c] != dataset->class_names()[c]) {
        throw BadInput(head.folder + ": class " + std::to_string(c) + " of the head is '" + trained_names[c] + "', " +
                       options.data + " calls it '" + dataset->class_names()[c] + "' (classes are matched by name)");
      }
    }
    if (encoder.value("model_sha256", "") != sha) {
      notes.push_back(head.folder + ": trained on a model with another SHA-256 than " + options.model);
    }
  }
  // One pass per (block, final norm, oracle) group of heads; the dino heads' oracle comes from their config.
  std::map<std::tuple<int, bool, std::string>, std::vector<size_t>> groups;
  std::map<std::string, std::string> oracle_files;  // SHA-256 -> file
  for (size_t i = 0; i < heads.size(); ++i) {
    const auto& encoder = heads[i].config.at("encoder");
    std::string oracle_sha;
    if (heads[i].head->spec().needs_oracle()) {
      const auto [file, sha] = recorded_oracle(heads[i]);
      oracle_files[sha] = file;
      oracle_sha = sha;
    }
    groups[{encoder.at("block").get<int>(), encoder.at("final_norm").get<bool>(), oracle_sha}].push_back(i);
  }
  std::map<std::string, std::shared_ptr<const VitEncoder>> oracles;
  for (const auto& [sha, file] : oracle_files) oracles[sha] = load_oracle(file, load, model.encoder->config());
  std::vector<std::array<int64_t, 3>> counts(heads.size(), {0, 0, 0});
  LoaderOptions loader;
  loader.batch_size = options.batch_size;
  loader.num_workers = options.workers;
  loader.bfloat16 = load.dtype == "bf16";
  loader.pin_memory = at::Device(load.device).is_cuda();
  at::NoGradGuard no_grad;
  for (const auto& [group, members] : groups) {
    std::vector<HeadSpec> specs;
    for (auto i : members) specs.push_back(heads[i].head->spec());
    const auto& [block, final_norm, oracle_sha] = group;
    const FeatureExtractor extractor(model.encoder, block, final_norm, required_features(specs),
                                     oracle_sha.empty() ? nullptr : oracles.at(oracle_sha));
    OnlineFeatures source(*dataset, ImageTransform(transform), loader, extractor);
    ProgressOptions progress_options;
    progress_options.enabled = options.progress;
    Progress progress("evaluate", dataset->size(), progress_options);
    source.start_epoch(0);
    while (auto batch = source.next()) {
      add_patch_tokens(batch->features, layout);
      const auto labels = batch->labels.unsqueeze(1);
      for (auto i : members) {
        const auto logits = heads[i].head->forward(batch->features, false);
        const auto top = std::get<1>(logits.topk(std::min<int64_t>(5, logits.size(1)), 1, true, true));
        const auto hits = top.eq(labels);
        counts[i][0] += hits.select(1, 0).sum().item<int64_t>();
        counts[i][1] += hits.any(1).sum().item<int64_t>();
        counts[i][2] += labels.size(0);
      }
      progress.advance(labels.size(0));
    }
  }
  nlohmann::json results = nlohmann::json::array();
  for (size_t i = 0; i < heads.size(); ++i) {
    const double items = std::max<double>(1, counts[i][2]);
    results.push_back({{"head", heads[i].config.at("head")}, {"folder", heads[i].folder},
                       {"top1", 100.0 * counts[i][0] / items}, {"top5", 100.0 * counts[i][1] / items},
                       {"items", counts[i][2]},
                       {"trained_top1", heads[i].config.at("training").value("top1", 0.0)}});
  }
  nlohmann::json summary = {{"model", options.model}, {"model_sha256", sha}, {"data", options.data},
                            {"split", options.split}, {"limit", options.limit}, {"items", dataset->size()},
                            {"heads", results}, {"notes", notes}, {"versions", versions_json()}};
  if (output) {
    write_file_atomically((fs::path(output->path()) / "evaluate.json").string(),
                          [&](std::ostream& out) { out << summary.dump(2) << "\n"; });
    output->commit();
  }
  return summary;
}

}  // namespace vitprobe
