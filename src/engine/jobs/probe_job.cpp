#include "jobs/probe_job.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.h"
#include "common/errors.h"
#include "common/progress.h"
#include "data/dataset.h"
#include "image/preprocess_json.h"
#include "io/atomic_file.h"
#include "probe/feature_cache.h"
#include "probe/file_hash.h"
#include "probe/head_io.h"
#include "probe/knn.h"
#include "probe/results.h"
#include "probe/trainer.h"

namespace vitprobe {

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The loaded encoder and everything derived from it that every split shares.
struct Context {
  LoadedModel model;
  std::string model_sha256;
  TokenLayout layout;
  TransformOptions eval_transform, train_transform;
  at::Device device = at::kCPU;
  int block = 0;  // non-negative
};

Context prepare(const FeatureOptions& options) {
  if (options.model.empty()) throw BadInput("--model is required");
  if (options.data.empty()) throw BadInput("--data is required");
  Context context;
  context.model = load_model(options.model, options.load);
  context.model_sha256 = sha256_file(options.model);
  const auto& config = context.model.encoder->config();
  context.layout = TokenLayout::of(config);
  context.block = options.block < 0 ? config.depth + options.block : options.block;
  if (context.block < 0 || context.block >= config.depth) {
    throw BadInput("--block " + std::to_string(options.block) + " out of range (the model has " +
                   std::to_string(config.depth) + " blocks)");
  }
  const auto preprocess = options.preprocess.resolve(context.model.report.metadata, config.img_size);
  if (preprocess.crop != config.img_size) {
    throw BadInput("--crop " + std::to_string(preprocess.crop) + " does not match the model's input size " +
                   std::to_string(config.img_size) + " (use --img-size to resample the position embeddings)");
  }
  context.eval_transform.preset = TransformPreset::Eval;
  context.eval_transform.preprocess = preprocess;
  context.train_transform.preset = TransformPreset::Train;
  context.train_transform.preprocess = preprocess;
  context.device = at::Device(options.load.device);
  return context;
}

std::unique_ptr<Dataset> open_split(const FeatureOptions& options, const std::string& split, int64_t limit) {
  DatasetSpec spec;
  spec.text = options.data;
  spec.split = split;
  spec.limit = limit;
  spec.seed = options.limit_seed;
  return open_dataset(spec);
}

FeatureCacheKey cache_key(const FeatureOptions& options, const Context& context, const std::string& split, int64_t limit) {
  FeatureCacheKey key;
  key.model_sha256 = context.model_sha256;
  key.img_size = context.model.encoder->config().img_size;
  key.dtype = options.load.dtype;
  key.data = options.data;
  key.split = split;
  key.limit = limit;
  key.limit_seed = options.limit_seed;
  key.block = context.block;
  key.final_norm = options.final_norm;
  key.transform = describe_transform(context.eval_transform);
  return key;
}

LoaderOptions eval_loader(const FeatureOptions& options) {
  LoaderOptions loader;
  loader.batch_size = options.batch_size;
  loader.num_workers = options.workers;
  loader.bfloat16 = options.load.dtype == "bf16";
  return loader;
}

std::string cache_root(const FeatureOptions& options) {
  return options.cache_dir.empty() ? default_cache_dir() : options.cache_dir;
}

// One split's data, with its cached features in cached mode.
struct Split {
  std::string name;
  int64_t limit = 0;
  std::unique_ptr<Dataset> dataset;
  std::unique_ptr<FeatureCache> cache;
};

void build_cache(Split& split, const FeatureOptions& options, const Context& context, const FeatureExtractor& extractor,
                 Communicator& communicator) {
  split.cache = FeatureCache::build(cache_root(options), cache_key(options, context, split.name, split.limit),
                                    extractor.names(), *split.dataset, ImageTransform(context.eval_transform), extractor,
                                    eval_loader(options), options.progress, communicator);
}

LoaderOptions sharded(LoaderOptions loader, const Communicator& communicator) {
  loader.rank = communicator.rank();
  loader.world_size = communicator.world_size();
  return loader;
}

nlohmann::json versions_json() {
  return {{"vitprobe", VITPROBE_VERSION}, {"libtorch", TORCH_VERSION}};
}

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

// k-NN heads: train features (eval transform) against val features; independent of the seed.
nlohmann::json run_knn(const ProbeJobOptions& options, const Context& context, const std::vector<HeadSpec>& specs,
                       Split& train, Split& val, const FeatureExtractor& extractor, Communicator& communicator) {
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
  for (const auto& spec : knn_specs) {
    const auto accuracies = knn_classify(knn_feature(train_features, spec), train_labels, knn_feature(val_features, spec),
                                         val_labels, train.dataset->num_classes(), options.knn_k, options.knn_temperature);
    results.push_back(knn_head_results(spec, accuracies, options.knn_temperature));
  }
  return results;
}

// The resume state of one seed's folder: DIR/resume/state.json naming DIR/resume/state-<epoch>.safetensors.
struct ResumeFiles {
  fs::path folder, json;
  explicit ResumeFiles(const std::string& dir) : folder(fs::path(dir) / "resume"), json(folder / "state.json") {}
};

void save_resume_state(const ResumeFiles& files, const ProbeTrainer& trainer, const nlohmann::json& fingerprint,
                       int64_t completed_epochs, const nlohmann::json& timing) {
  ensure_directory(files.folder.string());
  const auto tensors_name = "state-" + std::to_string(completed_epochs) + ".safetensors";
  auto tensors = trainer.checkpoint_tensors();
  write_safetensors((files.folder / tensors_name).string(), tensors, {});
  const nlohmann::json state = {{"fingerprint", fingerprint}, {"completed_epochs", completed_epochs},
                                {"tensors", tensors_name}, {"trainer", trainer.checkpoint_metadata()}, {"timing", timing}};
  write_file_atomically(files.json.string(), [&](std::ostream& out) { out << state.dump(1) << "\n"; });
  for (const auto& entry : fs::directory_iterator(files.folder)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("state-", 0) == 0 && name != tensors_name) fs::remove(entry.path());
  }
}

// Restores the trainer; returns the number of completed epochs (0 when there is no state).
int64_t load_resume_state(const ResumeFiles& files, ProbeTrainer& trainer, const nlohmann::json& fingerprint,
                          nlohmann::json& timing) {
  std::ifstream in(files.json);
  if (!in) return 0;
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(files.json.string() + ": not valid JSON (" + e.what() + ")");
  }
  if (state.at("fingerprint") != fingerprint) {
    std::string differing;
    for (const auto& [key, value] : fingerprint.items()) {
      if (!state["fingerprint"].contains(key) || state["fingerprint"][key] != value) differing += (differing.empty() ? "" : ", ") + key;
    }
    throw BadInput(files.json.string() + ": --resume with other options than the interrupted run (" + differing + ")");
  }
  const auto tensors_file = (files.folder / state.at("tensors").get<std::string>()).string();
  const auto raw = read_safetensors(tensors_file);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& entry : raw.entries) {
    if (entry.tensor.defined()) tensors[join_path(entry.path)] = entry.tensor;
  }
  trainer.restore(tensors, state.at("trainer"), tensors_file);
  timing = state.value("timing", nlohmann::json::object());
  return state.at("completed_epochs");
}

nlohmann::json head_config(const ProbeJobOptions& options, const Context& context, const HeadRun& run,
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
            {"optimizer", options.optimizer.kind},
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

SeedOutcome run_seed(const ProbeJobOptions& options, const Context& context, const std::vector<HeadSpec>& specs,
                     uint64_t seed, const std::string& dir, Split& train, Split& val, const FeatureExtractor& extractor,
                     const nlohmann::json& config, const nlohmann::json& knn_results, double extract_seconds,
                     int& epochs_left_before_stop, Communicator& communicator) {
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
    first_epoch = load_resume_state(resume_files, trainer, fingerprint, saved_timing);
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
    std::unique_ptr<FeatureSource> train_source, val_source;
    if (options.mode == "cached") {
      train_source = std::make_unique<CachedFeatures>(*train.cache, names, train_loader, context.device);
      val_source = std::make_unique<CachedFeatures>(*val.cache, names, val_loader, context.device);
    } else {
      train_source = std::make_unique<OnlineFeatures>(*train.dataset, ImageTransform(context.train_transform), train_loader,
                                                      train_extractor);
      val_source = std::make_unique<OnlineFeatures>(*val.dataset, ImageTransform(context.eval_transform), val_loader,
                                                    train_extractor);
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
        trainer.evaluate(*val_source, epoch, [&](int64_t items) { progress.advance(items); });
        progress.finish();
        timing["eval_seconds"] = timing["eval_seconds"].get<double>() + seconds_since(eval_start);
        if (options.features.progress && main_rank) {
          const HeadRun* best = nullptr;
          for (const auto& run : trainer.runs()) {
            if (!best || run.val.back().top1 > best->val.back().top1) best = &run;
          }
          char line[256];
          std::snprintf(line, sizeof line, "epoch %lld/%d: best %s top-1 %.2f%% (loss %.4f), %.1f s\n",
                        static_cast<long long>(epoch + 1), options.epochs, best->name().c_str(), best->val.back().top1,
                        best->train_loss.back(), train_seconds);
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
      save_head((fs::path(dir) / relative).string(), run.best_state,
                head_config(options, context, run, *train.dataset, config, seed));
    }
    saved[spec.name] = relative;
  }
  auto heads = trained_head_results(trainer, saved);
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

std::string default_cache_dir() {
  if (const char* dir = std::getenv("VITPROBE_CACHE"); dir && *dir) return dir;
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir && *dir) return (fs::path(dir) / "vitprobe" / "features").string();
  if (const char* home = std::getenv("HOME"); home && *home) return (fs::path(home) / ".cache" / "vitprobe" / "features").string();
  return (fs::temp_directory_path() / "vitprobe-features").string();
}

nlohmann::json run_probe_job(const ProbeJobOptions& options) {
  if (options.out_dir.empty()) throw BadInput("--out is required");
  if (options.mode != "online" && options.mode != "cached") {
    throw BadInput("--features '" + options.mode + "': expected online or cached");
  }
  if (options.seeds.empty()) throw BadInput("--seeds: no seed given");
  const auto specs = parse_head_list(options.heads);
  std::vector<double> lrs = options.base_lrs;
  if (lrs.empty()) lrs = options.blr > 0 ? std::vector<double>{options.blr} : default_learning_rate_grid();
  const auto communicator = connect(resolve_dist_options(options.features.dist));
  const Context context = prepare(options.features);
  for (const auto& spec : specs) check_head_fits(spec, context.layout);

  Split train{options.features.train_split, options.features.train_limit, nullptr, nullptr};
  Split val{options.features.val_split, options.features.val_limit, nullptr, nullptr};
  train.dataset = open_split(options.features, train.name, train.limit);
  val.dataset = open_split(options.features, val.name, val.limit);
  if (train.dataset->num_classes() != val.dataset->num_classes()) {
    throw BadInput(options.features.data + ": the " + train.name + " split has " + std::to_string(train.dataset->num_classes()) +
                   " classes, the " + val.name + " split " + std::to_string(val.dataset->num_classes()));
  }
  const FeatureExtractor extractor(context.model.encoder, context.block, options.features.final_norm, required_features(specs));

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
      {"preprocess", preprocess_json(p)}, {"train_transform", describe_transform(context.train_transform)}};

  double extract_seconds = 0;
  if (options.mode == "cached") {
    const auto start = std::chrono::steady_clock::now();
    build_cache(train, options.features, context, extractor, *communicator);
    build_cache(val, options.features, context, extractor, *communicator);
    extract_seconds = seconds_since(start);
    config["cache"] = {{"train", train.cache->folder()}, {"val", val.cache->folder()}};
  }
  const auto knn_results = run_knn(options, context, specs, train, val, extractor, *communicator);

  int epochs_left_before_stop = options.stop_after_epochs > 0 ? options.stop_after_epochs : -1;
  std::vector<nlohmann::json> per_seed;
  for (const auto seed : options.seeds) {
    const auto dir = options.seeds.size() == 1 ? options.out_dir
                                               : (fs::path(options.out_dir) / ("seed-" + std::to_string(seed))).string();
    auto outcome = run_seed(options, context, specs, seed, dir, train, val, extractor, config, knn_results,
                            extract_seconds, epochs_left_before_stop, *communicator);
    if (outcome.stopped) return outcome.results;
    per_seed.push_back(std::move(outcome.results));
  }
  if (per_seed.size() == 1) return per_seed.front();
  auto aggregated = aggregate_seeds(per_seed, config);
  if (communicator->is_main()) write_results(options.out_dir, aggregated);
  return aggregated;
}

nlohmann::json run_evaluate_job(const EvaluateJobOptions& options) {
  if (options.model.empty()) throw BadInput("--model is required");
  if (options.data.empty()) throw BadInput("--data is required");
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
    if (encoder.value("model_sha256", "") != sha) {
      notes.push_back(head.folder + ": trained on a model with another SHA-256 than " + options.model);
    }
  }
  // One pass per (block, final norm) group of heads.
  std::map<std::pair<int, bool>, std::vector<size_t>> groups;
  for (size_t i = 0; i < heads.size(); ++i) {
    const auto& encoder = heads[i].config.at("encoder");
    groups[{encoder.at("block").get<int>(), encoder.at("final_norm").get<bool>()}].push_back(i);
  }
  std::vector<std::array<int64_t, 3>> counts(heads.size(), {0, 0, 0});
  LoaderOptions loader;
  loader.batch_size = options.batch_size;
  loader.num_workers = options.workers;
  loader.bfloat16 = load.dtype == "bf16";
  at::NoGradGuard no_grad;
  for (const auto& [group, members] : groups) {
    std::vector<HeadSpec> specs;
    for (auto i : members) specs.push_back(heads[i].head->spec());
    const FeatureExtractor extractor(model.encoder, group.first, group.second, required_features(specs));
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
  if (!options.out.empty()) {
    ensure_directory(options.out);
    write_file_atomically((fs::path(options.out) / "evaluate.json").string(),
                          [&](std::ostream& out) { out << summary.dump(2) << "\n"; });
  }
  return summary;
}

nlohmann::json run_extract_job(const ExtractJobOptions& options) {
  const auto specs = parse_head_list(options.heads);
  const auto communicator = connect(resolve_dist_options(options.features.dist));
  const Context context = prepare(options.features);
  for (const auto& spec : specs) check_head_fits(spec, context.layout);
  const FeatureExtractor extractor(context.model.encoder, context.block, options.features.final_norm, required_features(specs));
  nlohmann::json splits = nlohmann::json::object();
  for (const auto& name : options.splits) {
    const bool is_val = is_val_split(name);
    Split split{name, is_val ? options.features.val_limit : options.features.train_limit, nullptr, nullptr};
    split.dataset = open_split(options.features, split.name, split.limit);
    const auto start = std::chrono::steady_clock::now();
    build_cache(split, options.features, context, extractor, *communicator);
    splits[name] = {{"folder", split.cache->folder()}, {"items", split.cache->size()}, {"features", split.cache->names()},
                    {"seconds", seconds_since(start)}};
  }
  return {{"model", options.features.model}, {"model_sha256", context.model_sha256},
          {"cache_dir", cache_root(options.features)}, {"block", context.block},
          {"final_norm", options.features.final_norm}, {"world_size", communicator->world_size()}, {"splits", splits}};
}

}  // namespace vitprobe
