#include "jobs/feature_setup.h"

#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "probe/file_hash.h"

namespace vitprobe {

namespace fs = std::filesystem;

namespace {

FeatureCacheKey cache_key(const FeatureOptions& options, const FeatureContext& context, const std::string& split,
                          int64_t limit, bool with_oracle) {
  FeatureCacheKey key;
  key.model_sha256 = context.model_sha256;
  if (with_oracle) key.oracle_sha256 = context.oracle_sha256;  // another oracle never reuses the dino feature
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

}  // namespace

std::string default_cache_dir() {
  if (const char* dir = std::getenv("VITPROBE_CACHE"); dir && *dir) return dir;
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir && *dir) return (fs::path(dir) / "vitprobe" / "features").string();
  if (const char* home = std::getenv("HOME"); home && *home) return (fs::path(home) / ".cache" / "vitprobe" / "features").string();
  return (fs::temp_directory_path() / "vitprobe-features").string();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

FeatureContext prepare_features(const FeatureOptions& options) {
  if (options.model.empty()) throw BadInput("--model is required");
  if (options.data.empty()) throw BadInput("--data is required");
  FeatureContext context;
  context.model = load_model(options.model, options.load);
  context.model_sha256 = sha256_file(options.model);
  const auto& config = context.model.encoder->config();
  context.layout = TokenLayout::of(config);
  context.block = options.block < 0 ? config.depth + options.block : options.block;
  if (context.block < 0 || context.block >= config.depth) {
    throw BadInput("--block " + std::to_string(options.block) + " out of range (the model has " +
                   std::to_string(config.depth) + " blocks)");
  }
  const auto preprocess = options.preprocess.resolve(context.model.report.metadata, config.img_size, context.model.report.file);
  if (preprocess.crop != config.img_size) {
    throw BadInput("--crop " + std::to_string(preprocess.crop) + " does not match the model's input size " +
                   std::to_string(config.img_size) + " (use --img-size to resample the position embeddings)");
  }
  context.eval_transform.preset = TransformPreset::Eval;
  context.eval_transform.preprocess = preprocess;
  context.train_transform.preset = TransformPreset::Train;
  context.train_transform.preprocess = preprocess;
  context.train_transform.crop_sampler = parse_crop_sampler(options.crop_sampler);
  context.device = at::Device(options.load.device);
  if (!options.oracle_model.empty()) {
    context.oracle = load_oracle(options.oracle_model, options.load, config);
    context.oracle_sha256 = sha256_file(options.oracle_model);
  }
  return context;
}

LoadOptions oracle_load_options(const LoadOptions& model) {
  LoadOptions load;
  load.img_size = model.img_size;
  load.dtype = model.dtype;
  load.device = model.device;
  load.backend = model.backend;
  load.allow_nonfinite = model.allow_nonfinite;
  return load;
}

std::shared_ptr<const VitEncoder> load_oracle(const std::string& file, const LoadOptions& model_load,
                                              const VitConfig& encoder) {
  auto oracle = load_model(file, oracle_load_options(model_load)).encoder;
  check_oracle_fits(oracle->config(), encoder, file);
  return oracle;
}

void check_oracle_option(const std::vector<HeadSpec>& specs, const FeatureOptions& options) {
  const bool wanted = std::any_of(specs.begin(), specs.end(), [](const HeadSpec& spec) { return spec.needs_oracle(); });
  if (wanted && options.oracle_model.empty()) {
    throw BadInput("head 'dino' needs --oracle-model CKPT (the encoder whose last-block [cls] attention weights the patches)");
  }
  if (!wanted && !options.oracle_model.empty()) {
    throw BadInput("--oracle-model " + options.oracle_model + ": only the dino head reads it, and --heads has none");
  }
}

FeatureExtractor make_extractor(const FeatureContext& context, const FeatureOptions& options, std::set<std::string> names) {
  return FeatureExtractor(context.model.encoder, context.block, options.final_norm, std::move(names), context.oracle);
}

std::unique_ptr<Dataset> open_split(const FeatureOptions& options, const std::string& split, int64_t limit) {
  DatasetSpec spec;
  spec.text = options.data;
  spec.split = split;
  spec.limit = limit;
  spec.seed = options.limit_seed;
  return open_dataset(spec);
}

LoaderOptions eval_loader(const FeatureOptions& options) {
  LoaderOptions loader;
  loader.batch_size = options.batch_size;
  loader.num_workers = options.workers;
  loader.bfloat16 = options.load.dtype == "bf16";
  loader.pin_memory = at::Device(options.load.device).is_cuda();
  return loader;
}

std::string cache_root(const FeatureOptions& options) {
  return options.cache_dir.empty() ? default_cache_dir() : options.cache_dir;
}

std::vector<std::string> input_folders(const FeatureOptions& options) {
  return {dataset_folder(options.data), cache_root(options)};
}

void build_cache(FeatureSplit& split, const FeatureOptions& options, const FeatureContext& context,
                 const FeatureExtractor& extractor, Communicator& communicator) {
  split.cache = FeatureCache::build(cache_root(options),
                                    cache_key(options, context, split.name, split.limit, needs_oracle(extractor.names())),
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

}  // namespace vitprobe
