// `vitprobe pretrain mae|dino`: self-supervised pretraining of a ViT encoder (MAE or DINO) on a dataset.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/pretrain_job.h"

namespace vitprobe::cli {
namespace {

struct PretrainFlags {
  PretrainOptions options;
  std::string mean, std;
  CLI::Option *mean_option = nullptr, *std_option = nullptr;
  int threads = 0;
  bool json = false;
  bool quiet = false;
};

// The command as typed, recorded in the saved encoder's metadata (model cards quote it).
std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string text, argument, line;
  while (std::getline(in, argument, '\0')) {
    const bool quote = argument.empty() || argument.find_first_of(" \t'\"$") != std::string::npos;
    line += (line.empty() ? "" : " ") + (quote ? "'" + argument + "'" : argument);
  }
  const auto slash = line.find_last_of('/', line.find(' '));
  return slash == std::string::npos ? line : line.substr(slash + 1);
}

void add_common_options(CLI::App& app, PretrainFlags& flags) {
  auto& options = flags.options;
  app.add_option(
         "--data", options.data,
         "Training images: " +
             [] {
               std::string names;
               for (const auto& name : dataset_format_names()) names += (names.empty() ? "" : ", ") + name;
               return names;
             }())
      ->capture_default_str();
  app.add_option("--limit", options.limit, "Use a class-balanced subset of N training images (0: all)")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--out", options.out, "Encoder file to write (.safetensors, timm keys), after every epoch")
      ->required();
  app.add_option("--state", options.state, "Training state file (default: OUT with .state.safetensors)");
  app.add_flag("--resume", options.resume, "Continue from --state after its last completed epoch");
  app.add_option("--arch", options.arch, "Architecture preset (vit_tiny_patch16, ...); else the size flags below");
  app.add_option("--img-size", options.img_size, "Input size")->capture_default_str()
      ->check(number_in(1, kMaxImageSide));
  app.add_option("--patch-size", options.patch_size, "Patch size")->capture_default_str()
      ->check(number_in(1, kMaxImageSide));
  app.add_option("--embed-dim", options.embed_dim, "Width")->capture_default_str()
      ->check(number_in(1, 65536));
  app.add_option("--depth", options.depth, "Blocks")->capture_default_str()
      ->check(number_in(1, 1024));
  app.add_option("--num-heads", options.num_heads, "Attention heads")->capture_default_str()
      ->check(number_in(1, 4096));
  app.add_option("--mlp-ratio", options.mlp_ratio, "MLP hidden size / width")->capture_default_str()
      ->check(positive(1024));
  app.add_option("--epochs", options.epochs, "Epochs (the schedules span them all)")->capture_default_str()
      ->check(number_in(1, 1e6));
  app.add_option("--max-steps", options.max_steps,
                 "Stop after N steps of this run (0: no limit); the state stays that of the last full epoch")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--batch-size", options.batch_size, "Images per step")->capture_default_str()
      ->check(number_in(1, kMaxBatch));
  app.add_option("--warmup-epochs", options.warmup_epochs, "Linear lr warm-up, in (fractional) epochs")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--seed", options.seed, "Seed of initialisation, data order, augmentation and masks")
      ->capture_default_str();
  app.add_option("--workers", options.workers, "Image decoding threads (MAE)")->capture_default_str()
      ->check(thread_count(1));
  app.add_option("--precision", options.precision, "Block compute dtype; master weights and the loss stay fp32")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  add_device_option(app, options.device);
  app.add_option("--save-dtype", options.save_dtype, "Dtype of the saved encoder")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  flags.mean_option = app.add_option("--mean", flags.mean, "Normalisation mean R,G,B")
                          ->check(rgb_triplet(false))
                          ->default_str("measured on up to 10000 training images");
  flags.std_option = app.add_option("--std", flags.std, "Normalisation std R,G,B")->default_str("measured")->check(rgb_triplet(true));
  app.add_option("--interpolation", options.interpolation, "Crop resize filter")
      ->capture_default_str()
      ->check(CLI::IsMember({"bicubic", "bilinear"}));
  add_threads_option(app, flags.threads);
  app.add_flag("--json", flags.json, "Print the result as JSON");
  app.add_flag("--quiet", flags.quiet, "No progress output");
}

void add_mae_options(CLI::App& app, MaeTrainingOptions& mae) {
  app.add_option("--mask-ratio", mae.mask_ratio, "Fraction of patches masked")->capture_default_str()
      ->check(number_in(0, 1, false, true));
  app.add_option("--norm-pix-loss", mae.norm_pix_loss, "Normalise each target patch (true/false)")
      ->capture_default_str();
  app.add_option("--decoder-dim", mae.decoder.dim, "Decoder width")->capture_default_str()
      ->check(number_in(1, 65536));
  app.add_option("--decoder-depth", mae.decoder.depth, "Decoder blocks")->capture_default_str()
      ->check(number_in(1, 1024));
  app.add_option("--decoder-num-heads", mae.decoder.num_heads, "Decoder heads")->capture_default_str()
      ->check(number_in(1, 4096));
  app.add_option("--blr", mae.base_lr, "Base lr: lr = blr * batch / 256")->capture_default_str()
      ->check(positive());
  app.add_option("--min-lr", mae.min_lr, "Final lr of the cosine")->capture_default_str()
      ->check(non_negative());
  app.add_option("--weight-decay", mae.weight_decay, "AdamW weight decay")->capture_default_str()
      ->check(non_negative());
  app.add_option("--beta2", mae.beta2, "AdamW beta2 (beta1 0.9)")->capture_default_str()
      ->check(number_in(0, 1, false, true));
  app.add_option("--crop-scale-min", mae.crop_scale_min, "RandomResizedCrop scale (MIN, 1)")->capture_default_str()
      ->check(number_in(0, 1, true, false));
}

void add_dino_options(CLI::App& app, DinoTrainingOptions& dino) {
  app.add_option("--out-dim", dino.head.out_dim, "Prototypes of the DINO head")->capture_default_str()
      ->check(number_in(1, 1 << 20));
  app.add_option("--head-hidden-dim", dino.head.hidden_dim, "Hidden width of the head MLP")->capture_default_str()
      ->check(number_in(1, 65536));
  app.add_option("--bottleneck-dim", dino.head.bottleneck_dim, "Bottleneck width of the head")->capture_default_str()
      ->check(number_in(1, 65536));
  app.add_option("--momentum-teacher", dino.momentum_teacher, "EMA momentum at the start (cosine to 1)")
      ->capture_default_str()
      ->check(number_in(0, 1));
  app.add_option("--warmup-teacher-temp", dino.warmup_teacher_temp, "Teacher temperature at the start")
      ->capture_default_str()
      ->check(positive());
  app.add_option("--teacher-temp", dino.teacher_temp, "Teacher temperature after warm-up")->capture_default_str()
      ->check(positive());
  app.add_option("--warmup-teacher-temp-epochs", dino.warmup_teacher_temp_epochs, "Teacher temperature warm-up epochs")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--student-temp", dino.student_temp, "Student temperature")->capture_default_str()
      ->check(positive());
  app.add_option("--center-momentum", dino.center_momentum, "Momentum of the center")->capture_default_str()
      ->check(number_in(0, 1));
  app.add_option("--local-crops", dino.num_local_crops, "Local crops per image")->capture_default_str()
      ->check(number_in(0, 64));
  app.add_option("--local-crop-size", dino.local_crop_size, "Local crop side (0: img-size * 96/224 on whole patches)")
      ->capture_default_str()
      ->check(number_in(0, kMaxImageSide));
  app.add_option("--global-scale-min", dino.global_scale_min, "Global crops scale (MIN, 1)")->capture_default_str()
      ->check(number_in(0, 1, true, false));
  app.add_option("--local-scale-min", dino.local_scale_min, "Local crops scale (MIN, MAX)")->capture_default_str()
      ->check(number_in(0, 1, true, false));
  app.add_option("--local-scale-max", dino.local_scale_max, "Local crops scale (MIN, MAX)")->capture_default_str()
      ->check(number_in(0, 1, true, false));
  app.add_option("--blr", dino.base_lr, "Base lr: lr = blr * batch / 256")->capture_default_str()
      ->check(positive());
  app.add_option("--min-lr", dino.min_lr, "Final lr of the cosine")->capture_default_str()
      ->check(non_negative());
  app.add_option("--weight-decay", dino.weight_decay, "Weight decay at the start (cosine to --weight-decay-end)")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--weight-decay-end", dino.weight_decay_end, "Weight decay at the end")->capture_default_str()
      ->check(non_negative());
  app.add_option("--clip-grad", dino.clip_grad, "Per-tensor gradient norm clip (0: off)")->capture_default_str()
      ->check(non_negative());
  app.add_option("--freeze-last-layer", dino.freeze_last_layer_epochs, "Epochs without updates of the last head layer")
      ->capture_default_str()
      ->check(non_negative());
}

int run(PretrainFlags& flags) {
  apply_threads(flags.threads);
  auto& options = flags.options;
  if (flags.mean_option->count()) options.mean = parse_triplet(flags.mean, "--mean");
  if (flags.std_option->count()) options.std = parse_triplet(flags.std, "--std");
  options.progress = !flags.quiet;
  options.command_line = command_line();
  const auto result = run_pretrain_job(options);
  if (flags.json) {
    std::cout << pretrain_result_json(result).dump(2) << "\n";
    return 0;
  }
  char line[256];
  std::snprintf(line, sizeof line, "%s: %d epochs, %lld steps, final loss %.4f, %.1f img/s, %.0f s\n",
                options.objective.c_str(), result.epochs_done, static_cast<long long>(result.steps_done),
                result.final_loss, result.images_per_second, result.wall_s);
  std::cout << line << "encoder: " << result.out << "\nstate:   " << result.state << "\n";
  return 0;
}

}  // namespace

Subcommand register_pretrain(CLI::App& parent) {
  auto mae = std::make_shared<PretrainFlags>();
  auto dino = std::make_shared<PretrainFlags>();
  mae->options.objective = "mae";
  dino->options.objective = "dino";
  auto* app = parent.add_subcommand("pretrain",
                                    "Pretrain a ViT encoder with MAE or DINO; save it as timm-named "
                                    "safetensors with per-epoch checkpoints and --resume");
  app->require_subcommand(1);
  auto* mae_app = app->add_subcommand("mae",
                                      "Masked autoencoder: random masking, encoder on visible patches, light "
                                      "decoder, normalised-pixel MSE on masked patches");
  add_common_options(*mae_app, *mae);
  add_mae_options(*mae_app, mae->options.mae);
  auto* dino_app = app->add_subcommand("dino",
                                       "DINO: student and EMA teacher with DINO heads, centering, "
                                       "multi-crop (2 global + local crops)");
  add_common_options(*dino_app, *dino);
  add_dino_options(*dino_app, dino->options.dino);
  dino->options.warmup_epochs = 1.0;
  return {app, [mae, dino, mae_app]() { return run(mae_app->parsed() ? *mae : *dino); }};
}

}  // namespace vitprobe::cli
