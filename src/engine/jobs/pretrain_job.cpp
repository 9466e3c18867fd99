#include "jobs/pretrain_job.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/loader.h"
#include "common/errors.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "io/atomic_file.h"
#include "pretrain/checkpoints.h"
#include "pretrain/multi_crop.h"
#include "pretrain/training_progress.h"

namespace vitprobe {
namespace {

constexpr int64_t kMeanStdSampleItems = 10000;

// The batches of one objective: MAE one RandomResizedCrop + flip view, DINO the multi-crop views.
class ViewSource {
 public:
  virtual ~ViewSource() = default;
  virtual int64_t num_batches() const = 0;
  virtual void start_epoch(int64_t epoch) = 0;
  virtual std::vector<at::Tensor> next() = 0;
};

class SingleViewSource final : public ViewSource {
 public:
  SingleViewSource(const Dataset& dataset, ImageTransform transform, LoaderOptions options)
      : loader_(dataset, std::move(transform), options),
        num_batches_(dataset.size() / options.batch_size) {}  // drop_last
  int64_t num_batches() const override { return num_batches_; }
  void start_epoch(int64_t epoch) override { loader_.start_epoch(epoch); }
  std::vector<at::Tensor> next() override {
    auto batch = loader_.next();
    if (!batch) throw std::logic_error("pretrain: loader ended before its last batch");
    return {batch->images};
  }

 private:
  BatchLoader loader_;
  int64_t num_batches_;
};

class MultiCropSource final : public ViewSource {
 public:
  MultiCropSource(const Dataset& dataset, MultiCropOptions options, int64_t batch_size, uint64_t seed)
      : loader_(dataset, std::move(options), batch_size, seed) {}
  int64_t num_batches() const override { return loader_.num_batches(); }
  void start_epoch(int64_t epoch) override {
    epoch_ = epoch;
    next_batch_ = 0;
  }
  std::vector<at::Tensor> next() override { return loader_.batch(epoch_, next_batch_++); }

 private:
  MultiCropLoader loader_;
  int64_t epoch_ = 0, next_batch_ = 0;
};

std::string triplet_text(const std::array<float, 3>& values) {
  std::ostringstream out;
  out.precision(6);
  out << values[0] << "," << values[1] << "," << values[2];
  return out.str();
}

// Per-channel mean and std of the pixels (0..1) of up to kMeanStdSampleItems training images.
std::pair<std::array<float, 3>, std::array<float, 3>> measure_mean_std(const Dataset& dataset, uint64_t seed) {
  const auto items = balanced_subset(dataset, kMeanStdSampleItems, seed);
  double sum[3] = {0, 0, 0}, sum_squares[3] = {0, 0, 0};
  double count = 0;
  for (int64_t index : items) {
    const ImageU8 image = dataset.load(index);
    const size_t n_pixels = image.pixels.size() / 3;
    for (size_t i = 0; i < n_pixels; ++i) {
      for (int c = 0; c < 3; ++c) {
        const double value = image.pixels[3 * i + c] / 255.0;
        sum[c] += value;
        sum_squares[c] += value * value;
      }
    }
    count += static_cast<double>(n_pixels);
  }
  std::array<float, 3> mean{}, std{};
  for (int c = 0; c < 3; ++c) {
    const double m = sum[c] / count;
    mean[c] = static_cast<float>(m);
    std[c] = static_cast<float>(std::sqrt(std::max(sum_squares[c] / count - m * m, 1e-12)));
  }
  return {mean, std};
}

int local_crop_size(const PretrainOptions& options, const VitConfig& config) {
  if (options.dino.local_crop_size > 0) return options.dino.local_crop_size;
  // DINO's 96 px local crops for 224 px inputs, at this resolution, on whole patches.
  const int patches = std::max(1, static_cast<int>(std::lround(config.img_size * 96.0 / 224.0 / config.patch_size)));
  return patches * config.patch_size;
}

void validate(const PretrainOptions& options) {
  if (options.objective != "mae" && options.objective != "dino") {
    throw BadInput("pretrain: unknown objective '" + options.objective + "' (expected mae or dino)");
  }
  if (options.out.empty()) throw BadInput("pretrain: --out is required");
  if (options.epochs < 1) throw BadInput("pretrain: --epochs " + std::to_string(options.epochs) + " must be >= 1");
  if (options.batch_size < 1) throw BadInput("pretrain: --batch-size must be >= 1");
  if (options.warmup_epochs < 0) throw BadInput("pretrain: --warmup-epochs must be >= 0");
  if (options.workers < 1) throw BadInput("pretrain: --workers must be >= 1");
  if (options.precision != "fp32" && options.precision != "bf16") {
    throw BadInput("pretrain: --precision '" + options.precision + "' (expected fp32 or bf16)");
  }
  if (options.save_dtype != "fp32" && options.save_dtype != "bf16" && options.save_dtype != "fp16") {
    throw BadInput("pretrain: --save-dtype '" + options.save_dtype + "' (expected fp32, bf16 or fp16)");
  }
}

at::ScalarType save_dtype(const std::string& name) {
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  return at::kFloat;
}

// Keys of the options JSON that may change between a run and its --resume.
bool may_change_on_resume(const std::string& key) {
  return key == "epochs" || key == "max_steps" || key == "workers" || key == "progress" || key == "out" ||
         key == "state" || key == "resume" || key == "command_line" || key == "save_dtype";
}

void check_resume_compatible(const std::string& file, const nlohmann::json& stored, const nlohmann::json& current) {
  auto text = [](const nlohmann::json& options, const std::string& key) {
    return options.contains(key) ? options[key].dump() : std::string("unset");
  };
  for (const auto* side : {&current, &stored}) {
    for (const auto& [key, value] : side->items()) {
      if (may_change_on_resume(key) || (stored.contains(key) && current.contains(key) && stored[key] == current[key])) {
        continue;
      }
      throw BadInput(file + ": cannot resume: option '" + key + "' was " + text(stored, key) + ", now " +
                     text(current, key));
    }
  }
}

}  // namespace

VitConfig pretrain_architecture(const PretrainOptions& options) {
  VitConfig config;
  if (!options.arch.empty()) {
    const auto preset = find_preset(options.arch);
    if (!preset) throw BadInput("pretrain: unknown --arch '" + options.arch + "'");
    config = *preset;
    config.img_size = options.img_size;
  } else {
    config.img_size = options.img_size;
    config.patch_size = options.patch_size;
    config.embed_dim = options.embed_dim;
    config.depth = options.depth;
    config.num_heads = options.num_heads;
    config.mlp_hidden_dim = static_cast<int>(std::lround(options.embed_dim * options.mlp_ratio));
  }
  config.in_chans = 3;
  config.class_token = true;
  config.pos_embed = PosEmbedKind::Learned;
  config.pos_embed_has_cls_slot = true;
  config.norm_eps = 1e-6;
  try {
    config.validate();
  } catch (const BadInput& error) {
    throw BadInput(std::string("pretrain: ") + error.what());
  }
  if (config.embed_dim % 4 != 0) throw BadInput("pretrain: embed dim must be divisible by 4 (sin-cos table)");
  return config;
}

nlohmann::json pretrain_options_json(const PretrainOptions& options) {
  nlohmann::json json = {{"objective", options.objective},
                         {"data", options.data},
                         {"limit", options.limit},
                         {"arch", options.arch},
                         {"img_size", options.img_size},
                         {"patch_size", options.patch_size},
                         {"embed_dim", options.embed_dim},
                         {"depth", options.depth},
                         {"num_heads", options.num_heads},
                         {"mlp_ratio", options.mlp_ratio},
                         {"epochs", options.epochs},
                         {"max_steps", options.max_steps},
                         {"batch_size", options.batch_size},
                         {"warmup_epochs", options.warmup_epochs},
                         {"seed", options.seed},
                         {"workers", options.workers},
                         {"precision", options.precision},
                         {"save_dtype", options.save_dtype},
                         {"interpolation", options.interpolation},
                         {"out", options.out},
                         {"state", options.state},
                         {"resume", options.resume},
                         {"progress", options.progress},
                         {"command_line", options.command_line}};
  if (options.mean) json["mean"] = *options.mean;
  if (options.std) json["std"] = *options.std;
  if (options.objective == "mae") {
    const auto& mae = options.mae;
    json["mae"] = {{"mask_ratio", mae.mask_ratio},
                   {"norm_pix_loss", mae.norm_pix_loss},
                   {"decoder_dim", mae.decoder.dim},
                   {"decoder_depth", mae.decoder.depth},
                   {"decoder_num_heads", mae.decoder.num_heads},
                   {"decoder_mlp_ratio", mae.decoder.mlp_ratio},
                   {"blr", mae.base_lr},
                   {"min_lr", mae.min_lr},
                   {"weight_decay", mae.weight_decay},
                   {"betas", {0.9, mae.beta2}},
                   {"crop_scale", {mae.crop_scale_min, 1.0}}};
  } else {
    const auto& dino = options.dino;
    json["dino"] = {{"out_dim", dino.head.out_dim},
                    {"head_hidden_dim", dino.head.hidden_dim},
                    {"bottleneck_dim", dino.head.bottleneck_dim},
                    {"momentum_teacher", dino.momentum_teacher},
                    {"warmup_teacher_temp", dino.warmup_teacher_temp},
                    {"teacher_temp", dino.teacher_temp},
                    {"warmup_teacher_temp_epochs", dino.warmup_teacher_temp_epochs},
                    {"student_temp", dino.student_temp},
                    {"center_momentum", dino.center_momentum},
                    {"local_crops_number", dino.num_local_crops},
                    {"local_crop_size", dino.local_crop_size},
                    {"global_crops_scale", {dino.global_scale_min, 1.0}},
                    {"local_crops_scale", {dino.local_scale_min, dino.local_scale_max}},
                    {"blr", dino.base_lr},
                    {"min_lr", dino.min_lr},
                    {"weight_decay", dino.weight_decay},
                    {"weight_decay_end", dino.weight_decay_end},
                    {"clip_grad", dino.clip_grad},
                    {"freeze_last_layer", dino.freeze_last_layer_epochs}};
  }
  return json;
}

nlohmann::json pretrain_result_json(const PretrainResult& result) {
  return {{"epochs_done", result.epochs_done},
          {"steps_done", result.steps_done},
          {"final_loss", result.final_loss},
          {"epoch_losses", result.epoch_losses},
          {"step_losses", result.step_losses},
          {"step_metrics", result.step_metrics},
          {"images_per_second", result.images_per_second},
          {"wall_s", result.wall_s},
          {"out", result.out},
          {"state", result.state}};
}

PretrainResult run_pretrain_job(const PretrainOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  validate(options);
  const VitConfig config = pretrain_architecture(options);
  const bool is_mae = options.objective == "mae";
  const auto dtype = parse_dtype(options.precision);
  PretrainResult result;
  result.out = options.out;
  result.state = options.state.empty() ? default_state_file(options.out) : options.state;
  if (options.resume && !std::filesystem::exists(result.state)) {
    throw IoError(result.state + ": no training state to resume from");
  }
  for (const auto& file : {result.out, result.state}) {
    const auto folder = std::filesystem::path(file).parent_path();
    if (!folder.empty()) ensure_directory(folder.string());
  }

  DatasetSpec spec;
  spec.text = options.data;
  spec.split = "train";
  spec.limit = options.limit;
  spec.seed = options.seed;
  const auto dataset = open_dataset(spec);

  // Normalisation: given, else stored in the state being resumed, else measured on the training images.
  std::array<float, 3> mean{}, std{};
  if (options.mean && options.std) {
    mean = *options.mean;
    std = *options.std;
  } else {
    std::tie(mean, std) = measure_mean_std(*dataset, options.seed);
    if (options.mean) mean = *options.mean;
    if (options.std) std = *options.std;
  }
  const Interpolation interpolation = parse_interpolation(options.interpolation);
  PreprocessOptions normalize;
  normalize.mean = mean;
  normalize.std = std;
  normalize.interpolation = interpolation;
  normalize.crop = config.img_size;
  normalize.resize = config.img_size;

  // The objective and its data pipeline.
  std::unique_ptr<PretrainObjective> objective;
  std::unique_ptr<ViewSource> source;
  double base_lr = 0.0, min_lr = 0.0, beta2 = 0.999;
  if (is_mae) {
    objective = make_mae_objective(config, options.mae, options.seed, dtype);
    TransformOptions transform;
    transform.preset = TransformPreset::Train;
    transform.preprocess = normalize;
    transform.ranges.scale_min = options.mae.crop_scale_min;
    LoaderOptions loader;
    loader.batch_size = options.batch_size;
    loader.num_workers = options.workers;
    loader.shuffle = true;
    loader.drop_last = true;
    loader.seed = options.seed;
    source = std::make_unique<SingleViewSource>(*dataset, ImageTransform(transform), loader);
    base_lr = options.mae.base_lr;
    min_lr = options.mae.min_lr;
    beta2 = options.mae.beta2;
  } else {
    MultiCropOptions crops;
    crops.global_size = config.img_size;
    crops.local_size = local_crop_size(options, config);
    crops.num_local_crops = options.dino.num_local_crops;
    crops.global_ranges.scale_min = options.dino.global_scale_min;
    crops.local_ranges.scale_min = options.dino.local_scale_min;
    crops.local_ranges.scale_max = options.dino.local_scale_max;
    crops.normalize = normalize;
    if (crops.local_size % config.patch_size != 0) {
      throw BadInput("pretrain: local crop size " + std::to_string(crops.local_size) +
                     " is not a multiple of the patch size " + std::to_string(config.patch_size));
    }
    objective = make_dino_objective(config, options.dino, 2 + crops.num_local_crops, options.seed, dtype);
    source = std::make_unique<MultiCropSource>(*dataset, crops, options.batch_size, options.seed);
    base_lr = options.dino.base_lr;
    min_lr = options.dino.min_lr;
  }
  const int64_t steps_per_epoch = source->num_batches();
  if (steps_per_epoch < 1) {
    throw BadInput("pretrain: " + std::to_string(dataset->size()) + " images make no full batch of " +
                   std::to_string(options.batch_size));
  }
  // The linear scaling rule of both papers: lr = blr * batch / 256.
  const double lr = base_lr * static_cast<double>(options.batch_size) / 256.0;
  AdamWOptions adam;
  adam.beta2 = beta2;
  AdamW optimizer(objective->trainable(), adam);

  const nlohmann::json options_json = pretrain_options_json(options);
  int start_epoch = 0;
  int64_t step = 0;
  double previous_wall_s = 0.0;
  if (options.resume) {
    const auto progress = nlohmann::json::parse(load_training_state(result.state, *objective, optimizer));
    check_resume_compatible(result.state, progress.at("options"), options_json);
    start_epoch = progress.at("epochs_done").get<int>();
    step = progress.at("steps_done").get<int64_t>();
    result.epoch_losses = progress.at("epoch_losses").get<std::vector<double>>();
    previous_wall_s = progress.at("wall_s").get<double>();
    mean = progress.at("mean").get<std::array<float, 3>>();
    std = progress.at("std").get<std::array<float, 3>>();
    if (start_epoch >= options.epochs) {
      throw BadInput(result.state + ": already has " + std::to_string(start_epoch) + " epochs; pass --epochs > " +
                     std::to_string(start_epoch) + " to train longer");
    }
  }
  const int64_t total_steps = steps_per_epoch * options.epochs;
  const double eval_resize = dataset->image_size() && dataset->image_size()->first == config.img_size &&
                                     dataset->image_size()->second == config.img_size
                                 ? config.img_size
                                 : std::floor(config.img_size / 0.875);

  auto metadata = [&](double wall_s) {
    std::map<std::string, std::string> values = {
        {"format", "pt"},
        {"source", "vitprobe pretrain " + options.objective},
        {"objective", options.objective},
        {"arch", "vit img " + std::to_string(config.img_size) + " patch " + std::to_string(config.patch_size) +
                     " dim " + std::to_string(config.embed_dim) + " depth " + std::to_string(config.depth) + " heads " +
                     std::to_string(config.num_heads)},
        {"num_heads", std::to_string(config.num_heads)},
        {"img_size", std::to_string(config.img_size)},
        {"patch_size", std::to_string(config.patch_size)},
        {"mean", triplet_text(mean)},
        {"std", triplet_text(std)},
        {"resize", std::to_string(static_cast<int>(eval_resize))},
        {"crop", std::to_string(config.img_size)},
        {"interpolation", options.interpolation},
        {"data", options.data},
        {"seed", std::to_string(options.seed)},
        {"epochs_done", std::to_string(result.epochs_done)},
        {"steps_done", std::to_string(step)},
        {"final_loss", std::to_string(result.final_loss)},
        {"epoch_losses", nlohmann::json(result.epoch_losses).dump()},
        {"wall_s", std::to_string(wall_s)},
        {"training", options_json.dump()},
        {"vitprobe_version", VITPROBE_VERSION},
    };
    if (!options.command_line.empty()) values["command"] = options.command_line;
    return values;
  };

  result.epochs_done = start_epoch;
  result.steps_done = step;
  if (!result.epoch_losses.empty()) result.final_loss = result.epoch_losses.back();
  int64_t images_this_run = 0;
  double seconds_this_run = 0.0;
  bool stopped = false;
  auto step_limit_reached = [&] {
    return options.max_steps > 0 && static_cast<int64_t>(result.step_losses.size()) >= options.max_steps;
  };
  for (int epoch = start_epoch; epoch < options.epochs && !stopped; ++epoch) {
    if (step_limit_reached()) break;
    TrainingProgress progress(
        options.objective + " epoch " + std::to_string(epoch + 1) + "/" + std::to_string(options.epochs),
        steps_per_epoch * options.batch_size, options.progress);
    source->start_epoch(epoch);
    for (int64_t batch = 0; batch < steps_per_epoch; ++batch) {
      if (step_limit_reached()) {
        stopped = true;
        break;
      }
      const auto views = source->next();
      TrainingStep info;
      info.epoch = epoch;
      info.step = step;
      info.total_steps = total_steps;
      info.epoch_position = epoch + static_cast<double>(batch) / static_cast<double>(steps_per_epoch);
      const double step_lr = warmup_cosine(lr, min_lr, info.epoch_position, options.warmup_epochs, options.epochs);
      at::Tensor loss = objective->loss(views, info);
      const double loss_value = loss.item<double>();
      if (!std::isfinite(loss_value)) {
        throw std::runtime_error("pretrain: loss is " + std::to_string(loss_value) + " at step " +
                                 std::to_string(step) + "; stopping (lower --blr?)");
      }
      optimizer.zero_grad();
      loss.backward();
      objective->before_update(info);
      optimizer.step(step_lr, objective->weight_decay(info));
      objective->after_update(info);
      ++step;
      result.step_losses.push_back(loss_value);
      for (const auto& [name, value] : objective->step_metrics()) result.step_metrics[name].push_back(value);
      progress.step(views.at(0).size(0), loss_value, step_lr);
    }
    progress.finish();
    images_this_run += static_cast<int64_t>(progress.images_per_second() * progress.elapsed_s() + 0.5);
    seconds_this_run += progress.elapsed_s();
    result.steps_done = step;
    if (stopped) {
      result.final_loss = progress.mean_loss();
      break;
    }
    result.epochs_done = epoch + 1;
    result.epoch_losses.push_back(progress.mean_loss());
    result.final_loss = progress.mean_loss();
    // Checkpoint: the state first, then the encoder, each renamed into place only once complete.
    const double wall_s =
        previous_wall_s + std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const nlohmann::json state_progress = {{"objective", options.objective},
                                           {"epochs_done", result.epochs_done},
                                           {"steps_done", step},
                                           {"epoch_losses", result.epoch_losses},
                                           {"wall_s", wall_s},
                                           {"mean", mean},
                                           {"std", std},
                                           {"options", options_json}};
    save_training_state(result.state, *objective, optimizer, state_progress.dump());
    save_encoder(options.out, objective->encoder(), save_dtype(options.save_dtype), metadata(wall_s));
  }
  result.wall_s = previous_wall_s + std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (stopped) save_encoder(options.out, objective->encoder(), save_dtype(options.save_dtype), metadata(result.wall_s));
  result.images_per_second = seconds_this_run > 0 ? static_cast<double>(images_this_run) / seconds_this_run : 0.0;
  return result;
}

}  // namespace vitprobe
