#include "cli_common.h"

#include <ATen/Parallel.h>

#include <thread>

namespace vitprobe::cli {

void add_load_options(CLI::App& app, LoadOptions& options) {
  app.add_option("--format", options.format, "Checkpoint key map: auto or one of timm, mae, dino, ibot, mocov3, "
                                             "dinov2, ijepa, torchvision")
      ->capture_default_str()
      ->check(CLI::IsMember(format_names()));
  app.add_option("--arch", options.arch, "Architecture preset giving the head count, e.g. vit_base_patch16");
  app.add_option("--num-heads,--heads", options.num_heads,
                 "Attention heads (0: from --arch, metadata, or width/64 convention)")
      ->capture_default_str();
  app.add_option("--img-size", options.img_size, "Input size; pos_embed is resampled when it differs (0: native)")
      ->capture_default_str();
  app.add_option("--dtype", options.dtype, "Compute dtype")->capture_default_str()->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--device", options.device, "Device")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--backend", options.backend, "Encoder implementation: auto (fast where built), reference (libtorch), "
                                               "fast (oneDNN)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "reference", "fast"}));
  app.add_flag("--allow-nonfinite", options.allow_nonfinite,
               "Load weights holding NaN or inf instead of refusing the checkpoint");
}

PreprocessSettings PreprocessFlags::settings() const {
  PreprocessSettings settings;
  if (mean_option && mean_option->count()) settings.mean = parse_triplet(mean, "--mean");
  if (std_option && std_option->count()) settings.std = parse_triplet(std, "--std");
  if (resize_option && resize_option->count()) settings.resize = resize;
  if (crop_option && crop_option->count()) settings.crop = crop;
  if (interpolation_option && interpolation_option->count()) settings.interpolation = interpolation;
  return settings;
}

void add_preprocess_options(CLI::App& app, PreprocessFlags& flags) {
  flags.mean_option = app.add_option("--mean", flags.mean, "Normalisation mean R,G,B (else checkpoint metadata)")
                          ->default_str("0.485,0.456,0.406");
  flags.std_option = app.add_option("--std", flags.std, "Normalisation std R,G,B (else checkpoint metadata)")
                         ->default_str("0.229,0.224,0.225");
  flags.resize_option = app.add_option("--resize", flags.resize, "Resize the short side to N before cropping")
                            ->default_str("crop/0.875 (256 for 224)");
  flags.crop_option = app.add_option("--crop", flags.crop, "Center crop size")->default_str("model input size (224)");
  flags.interpolation_option = app.add_option("--interpolation", flags.interpolation, "Resize filter")
                                   ->default_str("bicubic")
                                   ->check(CLI::IsMember({"bicubic", "bilinear"}));
}

CLI::Option* add_analysis_encoder_options(CLI::App& app, LoadOptions& load, PreprocessFlags& preprocess, int& threads) {
  add_load_options(app, load);
  auto* dtype = app.get_option("--dtype");
  dtype->default_str("bf16 where the CPU has avx512_bf16/amx_bf16, else fp32");
  add_preprocess_options(app, preprocess);
  add_threads_option(app, threads);
  return dtype;
}

void add_analysis_data_options(CLI::App& app, DatasetSpec& data, std::string& class_names) {
  app.add_option("--data", data.text, analysis_dataset_help())->required();
  app.add_option("--split", data.split, "Split")->capture_default_str()->check(CLI::IsMember({"train", "val", "test"}));
  app.add_option("--limit", data.limit, "Use N images (seeded shuffle, class-balanced; 0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", data.seed, "Seed of --limit")->capture_default_str();
  app.add_option("--class-names", class_names, "filelist data: file with one class name per integer label");
}

void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("--threads", threads, "Compute threads (0: all cores)")->capture_default_str();
}

void apply_threads(int threads) {
  at::set_num_threads(threads > 0 ? threads : default_threads_per_process());
}

void add_dist_options(CLI::App& app, DistOptions& options) {
  const char* group = "Distributed (torchrun-style variables RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT work too)";
  app.add_option("--rank", options.rank, "This process's rank")->default_str("$RANK or 0")->group(group);
  app.add_option("--world-size", options.world_size, "Number of ranks")->default_str("$WORLD_SIZE or 1")->group(group);
  app.add_option("--master", options.master, "Rendezvous ADDR:PORT of rank 0")
      ->default_str("$MASTER_ADDR:$MASTER_PORT")
      ->group(group);
  app.add_option("--dist-timeout", options.timeout_s, "Seconds to wait for the other ranks (joining, each collective)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(group);
}

bool prints_output(const DistOptions& options) {
  try {
    return resolve_dist_options(options).rank == 0;
  } catch (const std::exception&) {
    return true;
  }
}

}  // namespace vitprobe::cli
