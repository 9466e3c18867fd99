#include "jobs/probe_job.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/progress.h"
#include "data/holdout_split.h"
#include "image/preprocess_json.h"
#include "io/output_folder.h"
#include "jobs/feature_setup.h"
#include "jobs/probe_knn.h"
#include "jobs/probe_resume.h"
#include "probe/head_io.h"
#include "probe/results.h"
#include "probe/trainer.h"

namespace vitprobe {

namespace fs = std::filesystem;

namespace {

// The dino head's oracle as its config records it: `vitprobe evaluate` reloads it from there.
nlohmann::json oracle_json(const FeatureOptions& options, const FeatureContext& context) {
  return {{"model", fs::absolute(options.oracle_model).lexically_normal().string()},
          {"model_sha256", context.oracle_sha256}};
}

nlohmann::json head_config(const ProbeJobOptions& options, const FeatureContext& context, const HeadRun& run,
                           const Dataset& dataset, const nlohmann::json& config, uint64_t seed) {
  const auto& head = *run.head;
  return {{"format", "vitprobe-head"},
          {"version", 1},
          {"head", run.spec.name},
          {"type", head_kind_name(run.spec.kind)},
          {"options", spec_options_json(run.spec)},
          {"layout", layout_to_json(head.layout())},
          {"num_classes", head.num_classes()},
          {"class_names", dataset.class_names()},
          {"feature_dim", head.feature_dim()},
          {"trainable_parameters", head.num_trainable_parameters()},
          {"encoder",
           {{"model", options.features.model},
            {"model_sha256", context.model_sha256},
            {"format", context.model.report.source},
            {"img_size", context.model.encoder->config().img_size},
            {"dtype", options.features.load.dtype},
            {"block", context.block},
            {"final_norm", options.features.final_norm},
            {"preprocess", preprocess_json(context.eval_transform.preprocess)}}},
          {"training",
           {{"base_lr", run.base_lr},
            {"lr", run.peak_lr},
            {"best_epoch", run.best_epoch},
            {"top1", run.best_top1},
            {"top5", run.best_top5},
            {"selected_on", options.select_on},
            {"holdout_top1", run.holdout.empty() ? nlohmann::json() : nlohmann::json(run.selection_top1)},
            {"optimizer", options.optimizer.kind},
            {"head_init", options.head_init},
            {"epochs", options.epochs},
            {"batch", options.features.batch_size},
            {"effective_batch", config.at("effective_batch")},
            {"seed", seed},
            {"features", options.mode},
            {"data", options.features.data}}}};
}

struct SeedOutcome {
  nlohmann::json results;
  bool stopped = false;
};

// The held-out part of the training split (--select-on train-holdout): its item lists and, for online
// features, views of the training dataset restricted to each part.
struct Holdout {
  HoldoutSplit split;
  std::unique_ptr<Dataset> fit, held;
};

SeedOutcome run_seed(const ProbeJobOptions& options, const FeatureContext& context, const std::vector<HeadSpec>& specs,
                     uint64_t seed, const std::string& dir, FeatureSplit& train, FeatureSplit& val,
                     const FeatureExtractor& extractor, const nlohmann::json& config, const nlohmann::json& knn_results,
                     double extract_seconds, int& epochs_left_before_stop, Communicator& communicator,
                     const Holdout* holdout) {
  const bool main_rank = communicator.is_main();
  const auto results_file = fs::path(dir) / "results.json";
  const ResumeFiles resume_files(dir);
  if (options.resume && fs::exists(results_file) && !fs::exists(resume_files.json)) {
    std::ifstream in(results_file);
    auto existing = nlohmann::json::parse(in);
    if (existing.value("status", "") == "complete" && existing.value("config", nlohmann::json()) == config) {
      return {existing, false};
    }
  }
  if (main_rank && !options.resume && fs::exists(resume_files.folder)) fs::remove_all(resume_files.folder);
  communicator.barrier();  // nobody reads a resume state rank 0 is removing

  TrainerOptions trainer_options;
  trainer_options.epochs = options.epochs;
  trainer_options.warmup_epochs = options.warmup_epochs;
  trainer_options.min_lr = options.min_lr;
  trainer_options.batch_size = options.features.batch_size;
  trainer_options.accum_iter = options.accum_iter;
  trainer_options.base_lrs = config.at("lrs").get<std::vector<double>>();
  trainer_options.optimizer = options.optimizer;
  trainer_options.seed = seed;
  trainer_options.head_threads = options.head_threads;
  trainer_options.classifier_init = parse_classifier_init(options.head_init);
  const int64_t num_classes = train.dataset->num_classes();
  ProbeTrainer trainer(specs, context.layout, num_classes, trainer_options, context.device, &communicator);

  // What a resumed run must share with the interrupted one: everything but how the global batch is split
  // over ranks and micro-batches (so another world size can take over) and where the cache lives.
  nlohmann::json fingerprint = config;
  for (const char* key : {"batch", "accum_iter", "world_size", "cache"}) fingerprint.erase(key);
  fingerprint["seed"] = seed;
  nlohmann::json timing = {{"extract_seconds", extract_seconds}, {"train_seconds", 0.0}, {"eval_seconds", 0.0},
                           {"epoch_seconds", nlohmann::json::array()}};
  int64_t first_epoch = 0;
  if (options.resume) {
    nlohmann::json saved_timing;
    first_epoch = load_resume_state(resume_files, trainer, fingerprint, options.epochs, saved_timing);
    if (first_epoch > 0) {
      timing.update(saved_timing);
      timing["extract_seconds"] = extract_seconds;
      if (options.features.progress && main_rank) std::cerr << "resuming " << dir << " after epoch " << first_epoch << "\n";
    }
  }

  if (!trainer.runs().empty()) {
    const auto names = trainer.required_features();
    const FeatureExtractor train_extractor = extractor.with_names(names);
    LoaderOptions train_loader = sharded(eval_loader(options.features), communicator);
    train_loader.shuffle = true;
    train_loader.drop_last = true;
    train_loader.seed = seed;
    const LoaderOptions val_loader = sharded(eval_loader(options.features), communicator);
    std::unique_ptr<FeatureSource> train_source, val_source, holdout_source;
    if (options.mode == "cached") {
      train_source = std::make_unique<CachedFeatures>(*train.cache, names, train_loader, context.device,
                                                      holdout ? holdout->split.fit : std::vector<int64_t>());
      val_source = std::make_unique<CachedFeatures>(*val.cache, names, val_loader, context.device);
      if (holdout) {
        holdout_source = std::make_unique<CachedFeatures>(*train.cache, names, val_loader, context.device, holdout->split.holdout);
      }
    } else {
      const Dataset& fit = holdout ? *holdout->fit : *train.dataset;
      train_source = std::make_unique<OnlineFeatures>(fit, ImageTransform(context.train_transform), train_loader, train_extractor);
      val_source = std::make_unique<OnlineFeatures>(*val.dataset, ImageTransform(context.eval_transform), val_loader,
                                                    train_extractor);
      if (holdout) {
        holdout_source = std::make_unique<OnlineFeatures>(*holdout->held, ImageTransform(context.eval_transform), val_loader,
                                                          train_extractor);
      }
    }
    // Online epochs are slow enough for progress lines; cached ones print one line per evaluated epoch.
    ProgressOptions progress_options;
    progress_options.enabled = options.features.progress && options.mode == "online" && main_rank;
    for (int64_t epoch = first_epoch; epoch < options.epochs; ++epoch) {
      if (epochs_left_before_stop == 0) {
        return SeedOutcome{nlohmann::json{{"status", "stopped"}, {"completed_epochs", epoch}, {"dir", dir}}, true};
      }
      const auto train_start = std::chrono::steady_clock::now();
      {
        Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(options.epochs) + " train",
                          0, progress_options);
        trainer.train_epoch(*train_source, epoch, [&](int64_t items) { progress.advance(items); });
      }
      const double train_seconds = seconds_since(train_start);
      timing["train_seconds"] = timing["train_seconds"].get<double>() + train_seconds;
      timing["epoch_seconds"].push_back(train_seconds);
      const bool last = epoch + 1 == options.epochs;
      if (last || (epoch + 1) % std::max(1, options.eval_every) == 0) {
        const auto eval_start = std::chrono::steady_clock::now();
        Progress progress("epoch " + std::to_string(epoch + 1) + " eval", 0, progress_options);
        trainer.evaluate(*val_source, holdout_source.get(), epoch, [&](int64_t items) { progress.advance(items); });
        progress.finish();
        timing["eval_seconds"] = timing["eval_seconds"].get<double>() + seconds_since(eval_start);
        if (options.features.progress && main_rank) {
          // The pair that leads on what chooses (held-out, else validation); its validation top-1 beside.
          const HeadRun* best = nullptr;
          const auto chooser = [](const HeadRun& run) { return run.holdout.empty() ? run.val.back().top1 : run.holdout.back().top1; };
          for (const auto& run : trainer.runs()) {
            if (!best || chooser(run) > chooser(*best)) best = &run;
          }
          char line[256];
          if (best->holdout.empty()) {
            std::snprintf(line, sizeof line, "epoch %lld/%d: best %s top-1 %.2f%% (loss %.4f), %.1f s\n",
                          static_cast<long long>(epoch + 1), options.epochs, best->name().c_str(), best->val.back().top1,
                          best->train_loss.back(), train_seconds);
          } else {
            std::snprintf(line, sizeof line, "epoch %lld/%d: best held-out %s top-1 %.2f%% (val %.2f%%, loss %.4f), %.1f s\n",
                          static_cast<long long>(epoch + 1), options.epochs, best->name().c_str(),
                          best->holdout.back().top1, best->val.back().top1, best->train_loss.back(), train_seconds);
          }
          std::cerr << line;
        }
      }
      if (main_rank) save_resume_state(resume_files, trainer, fingerprint, epoch + 1, timing);
      if (epochs_left_before_stop > 0) --epochs_left_before_stop;
    }
  }

  // Best learning rate per head, at its best epoch.
  std::map<std::string, std::string> saved;
  for (const auto& spec : specs) {
    if (!spec.trainable()) continue;
    const auto& run = trainer.runs()[best_run_index(trainer, spec.name)];
    const auto relative = "heads/" + head_folder_name(spec.name);
    if (main_rank) {
      auto head_json = head_config(options, context, run, *train.dataset, config, seed);
      if (spec.needs_oracle()) head_json["oracle"] = oracle_json(options.features, context);
      save_head((fs::path(dir) / relative).string(), run.best_state, head_json);
    }
    saved[spec.name] = relative;
  }
  auto heads = trained_head_results(trainer, saved);
  if (main_rank) {
    for (const auto& head : heads) {
      if (head.value("lr_at_grid_edge", nlohmann::json()) == true) {
        std::cerr << edge_warning(head["head"], head["best_lr"], trainer_options.base_lrs)
                  << (options.seeds.size() > 1 ? " (seed " + std::to_string(seed) + ")" : std::string()) << "\n";
      }
    }
  }
  for (const auto& knn : knn_results) heads.push_back(knn);
  // Keep the order of --heads.
  nlohmann::json ordered = nlohmann::json::array();
  for (const auto& spec : specs) {
    for (const auto& head : heads) {
      if (head["head"] == spec.name) ordered.push_back(head);
    }
  }
  nlohmann::json results = {{"format", "vitprobe-probe-results"}, {"version", 1}, {"status", "complete"},
                            {"config", config}, {"seed", seed}, {"versions", versions_json()},
                            {"timing", timing}, {"heads", ordered}};
  if (communicator.distributed()) {
    results["communication"] = {{"world_size", communicator.world_size()},
                                {"bytes_reduced_per_rank", communicator.bytes_reduced()},
                                {"collectives", communicator.collectives()}};
  }
  if (main_rank) {
    write_results(dir, results);
    fs::remove_all(resume_files.folder);
  }
  return {results, false};
}

}  // namespace

nlohmann::json run_probe_job(const ProbeJobOptions& given) {
  // In a distributed run each rank takes its own GPU (LOCAL_RANK); the c10d group then uses NCCL for it.
  ProbeJobOptions options = given;
  const DistOptions dist = rank_dist_options(options.features.dist, options.features.load.device);
  if (options.out_dir.empty()) throw BadInput("--out is required");
  if (options.mode != "online" && options.mode != "cached") {
    throw BadInput("--features '" + options.mode + "': expected online or cached");
  }
  if (options.seeds.empty()) throw BadInput("--seeds: no seed given");
  const auto specs = parse_head_list(options.heads);
  check_oracle_option(specs, options.features);
  std::vector<double> lrs = options.base_lrs;
  if (lrs.empty()) lrs = options.blr > 0 ? std::vector<double>{options.blr} : default_learning_rate_grid(options.optimizer.kind);
  if (options.select_on != "train-holdout" && options.select_on != "val") {
    throw BadInput("--select-on '" + options.select_on + "': expected train-holdout or val");
  }
  parse_classifier_init(options.head_init);  // a bad value fails before any work
  const auto communicator = connect(dist);
  // --out is checked and locked before any work, by the rank that writes it. It is written in place: the resume
  // state of an interrupted run must survive there; a run that fails removes what it added, but the resume state.
  check_output_location(options.out_dir, input_folders(options.features));
  std::optional<OutputFolder> output;
  if (communicator->is_main()) {
    output.emplace(options.out_dir, input_folders(options.features), OutputFolder::Mode::InPlace);
    output->keep_on_failure("resume");
    for (const auto seed : options.seeds) output->keep_on_failure("seed-" + std::to_string(seed) + "/resume");
  }
  const FeatureContext context = prepare_features(options.features);
  for (const auto& spec : specs) check_head_fits(spec, context.layout);

  FeatureSplit train{options.features.train_split, options.features.train_limit, nullptr, nullptr};
  FeatureSplit val{options.features.val_split, options.features.val_limit, nullptr, nullptr};
  train.dataset = open_split(options.features, train.name, train.limit);
  val.dataset = open_split(options.features, val.name, val.limit);
  check_same_classes(*train.dataset, *val.dataset, options.features.data);
  std::unique_ptr<Holdout> holdout;
  if (options.select_on == "train-holdout") {
    holdout = std::make_unique<Holdout>();
    holdout->split = stratified_holdout(*train.dataset, options.holdout_fraction, options.holdout_seed);
    holdout->fit = make_subset_view(*train.dataset, holdout->split.fit, "fit part");
    holdout->held = make_subset_view(*train.dataset, holdout->split.holdout, "held-out part");
  }
  const FeatureExtractor extractor = make_extractor(context, options.features, required_features(specs));

  const int64_t effective_batch = options.features.batch_size * options.accum_iter * communicator->world_size();
  std::vector<std::string> head_names;
  for (const auto& spec : specs) head_names.push_back(spec.name);
  const auto& p = context.eval_transform.preprocess;
  nlohmann::json config = {
      {"model", options.features.model}, {"model_sha256", context.model_sha256}, {"format", context.model.report.source},
      {"img_size", context.model.encoder->config().img_size}, {"dtype", options.features.load.dtype},
      {"data", options.features.data}, {"train_split", train.name}, {"val_split", val.name},
      {"train_limit", train.limit}, {"val_limit", val.limit}, {"limit_seed", options.features.limit_seed},
      {"train_items", train.dataset->size()}, {"val_items", val.dataset->size()},
      {"num_classes", train.dataset->num_classes()}, {"block", context.block}, {"final_norm", options.features.final_norm},
      {"features", options.mode}, {"heads", head_names}, {"lrs", lrs}, {"epochs", options.epochs},
      {"warmup_epochs", options.warmup_epochs}, {"min_lr", options.min_lr}, {"batch", options.features.batch_size},
      {"accum_iter", options.accum_iter}, {"world_size", communicator->world_size()},
      {"effective_batch", effective_batch}, {"optimizer", options.optimizer.kind},
      {"momentum", options.optimizer.momentum}, {"weight_decay", options.optimizer.weight_decay},
      {"eval_every", options.eval_every}, {"knn_k", options.knn_k}, {"knn_temperature", options.knn_temperature},
      {"select_on", options.select_on}, {"head_init", options.head_init},
      {"preprocess", preprocess_json(p)}, {"train_transform", describe_transform(context.train_transform)}};

  if (context.oracle) {  // only then: the configs (and resume fingerprints) of runs without one stay as they were
    config["oracle"] = oracle_json(options.features, context);
  }
  // The training crop only exists online: cached features come from the eval transform.
  if (options.mode == "online") config["crop_sampler"] = options.features.crop_sampler;
  if (holdout) {
    config["holdout_fraction"] = options.holdout_fraction;
    config["holdout_seed"] = options.holdout_seed;
    config["holdout_items"] = holdout->split.holdout.size();
    config["fit_items"] = holdout->split.fit.size();
  }

  double extract_seconds = 0;
  if (options.mode == "cached") {
    const auto start = std::chrono::steady_clock::now();
    build_cache(train, options.features, context, extractor, *communicator);
    build_cache(val, options.features, context, extractor, *communicator);
    extract_seconds = seconds_since(start);
    config["cache"] = {{"train", train.cache->folder()}, {"val", val.cache->folder()}};
  }
  const auto knn_results =
      run_knn(options, context, specs, train, val, extractor, *communicator, holdout ? &holdout->split : nullptr);

  int epochs_left_before_stop = options.stop_after_epochs > 0 ? options.stop_after_epochs : -1;
  std::vector<nlohmann::json> per_seed;
  for (const auto seed : options.seeds) {
    const auto dir = options.seeds.size() == 1 ? options.out_dir
                                               : (fs::path(options.out_dir) / ("seed-" + std::to_string(seed))).string();
    auto outcome = run_seed(options, context, specs, seed, dir, train, val, extractor, config, knn_results,
                            extract_seconds, epochs_left_before_stop, *communicator, holdout.get());
    if (outcome.stopped) {  // --stop-after-epochs: as if killed, what was written stays
      if (output) output->commit();
      return outcome.results;
    }
    per_seed.push_back(std::move(outcome.results));
  }
  if (per_seed.size() == 1) {
    if (output) output->commit();
    return per_seed.front();
  }
  auto aggregated = aggregate_seeds(per_seed, config);
  if (communicator->is_main()) write_results(options.out_dir, aggregated);
  if (output) output->commit();
  return aggregated;
}

}  // namespace vitprobe
