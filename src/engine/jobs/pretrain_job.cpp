#include "jobs/pretrain_job.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/loader.h"
#include "common/errors.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "io/atomic_file.h"
#include "io/output_folder.h"
#include "jobs/pretrain_views.h"
#include "pretrain/checkpoints.h"
#include "pretrain/training_progress.h"

namespace vitprobe {
namespace {

std::string triplet_text(const std::array<float, 3>& values) {
  std::ostringstream out;
  out.precision(6);
  out << values[0] << "," << values[1] << "," << values[2];
  return out.str();
}

at::ScalarType save_dtype(const std::string& name) {
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  return at::kFloat;
}

}  // namespace

PretrainResult run_pretrain_job(const PretrainOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  validate_pretrain_options(options);
  const VitConfig config = pretrain_architecture(options);
  const bool is_mae = options.objective == "mae";
  const auto dtype = parse_dtype(options.precision);
  PretrainResult result;
  result.out = options.out;
  result.state = options.state.empty() ? default_state_file(options.out) : options.state;
  if (options.resume && !std::filesystem::exists(result.state)) {
    throw IoError(result.state + ": no training state to resume from");
  }
  // --out and the state file are checked and locked before any work; temporaries of killed runs are removed.
  std::vector<std::unique_ptr<OutputLock>> locks;
  for (const auto& file : {result.out, result.state}) {
    check_output_file(file, {dataset_folder(options.data)});
    const auto folder = std::filesystem::path(file).parent_path();
    if (!folder.empty()) ensure_directory(folder.string());
    remove_stale_temporaries(folder.empty() ? "." : folder.string(), false,
                             std::filesystem::path(file).filename().string());
    locks.push_back(std::make_unique<OutputLock>(file));
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
  // On a GPU: every trained tensor and buffer moves there in place (the objective keeps its handles), before
  // the optimizer makes its moments alike.
  const at::Device device(options.device);
  if (!device.is_cpu()) {
    at::NoGradGuard no_grad;
    for (auto& trainable : objective->trainable()) trainable.tensor.set_data(trainable.tensor.data().to(device));
    for (auto& [name, buffer] : objective->buffers()) buffer.set_data(buffer.data().to(device));
  }
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
      auto views = source->next();
      for (auto& view : views) view = view.to(device, /*non_blocking=*/true);
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
