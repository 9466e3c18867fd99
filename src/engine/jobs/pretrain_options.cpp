#include "jobs/pretrain_options.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/errors.h"

namespace vitprobe {
namespace {

// Keys of the options JSON that may change between a run and its --resume.
bool may_change_on_resume(const std::string& key) {
  return key == "epochs" || key == "max_steps" || key == "workers" || key == "progress" || key == "out" ||
         key == "state" || key == "resume" || key == "command_line" || key == "save_dtype";
}

}  // namespace

void validate_pretrain_options(const PretrainOptions& options) {
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

}  // namespace vitprobe
