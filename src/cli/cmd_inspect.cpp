// `vitprobe inspect`: what a checkpoint holds and how vitprobe reads it.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"

namespace vitprobe::cli {
namespace {

struct InspectOptions {
  std::string model;
  bool json = false;
  LoadOptions load;
};

nlohmann::json describe(const LoadedModel& model) {
  const auto& config = model.encoder->config();
  nlohmann::json arch = {
      {"embed_dim", config.embed_dim},
      {"depth", config.depth},
      {"num_heads", config.num_heads},
      {"patch_size", config.patch_size},
      {"img_size", config.img_size},
      {"native_img_size", model.report.native_img_size},
      {"in_chans", config.in_chans},
      {"mlp_ratio", config.mlp_ratio()},
      {"mlp_hidden_dim", config.mlp_hidden_dim},
      {"qkv_bias", config.qkv_bias},
      {"class_token", config.class_token},
      {"num_registers", config.num_registers},
      {"layer_scale", config.layer_scale},
      {"final_norm", config.final_norm},
      {"pos_embed", config.pos_embed == PosEmbedKind::Learned ? "learned" : "sincos-2d"},
      {"pos_embed_has_cls_slot", config.pos_embed_has_cls_slot},
      {"num_tokens", config.num_tokens()},
  };
  nlohmann::json out = {
      {"file", model.report.file},
      {"format", model.report.format},
      {"source", model.report.source},
      {"container", model.report.container},
      {"prefix", model.report.prefix},
      {"arch", arch},
      {"num_params", config.num_parameters()},
      {"ignored_keys", model.report.ignored_keys},
      {"skipped_entries", model.report.skipped_entries},
      {"notes", model.report.notes},
      {"metadata", model.report.metadata},
      {"problems", nlohmann::json::array()},
  };
  out["classifier"] = model.classifier ? nlohmann::json{{"num_classes", model.classifier->weight.size(0)}}
                                       : nlohmann::json(nullptr);
  return out;
}

void print_text(const nlohmann::json& info) {
  const auto& arch = info["arch"];
  std::cout << "file:        " << info["file"].get<std::string>() << "\n"
            << "format:      " << info["format"].get<std::string>() << " (key map: " << info["source"].get<std::string>()
            << ")\n";
  if (!info["container"].get<std::string>().empty() || !info["prefix"].get<std::string>().empty()) {
    std::cout << "encoder at:  container '" << info["container"].get<std::string>() << "', prefix '"
              << info["prefix"].get<std::string>() << "'\n";
  }
  std::cout << "arch:        dim " << arch["embed_dim"] << ", depth " << arch["depth"] << ", heads " << arch["num_heads"]
            << ", patch " << arch["patch_size"] << ", img " << arch["img_size"] << ", mlp " << arch["mlp_hidden_dim"]
            << ", qkv_bias " << arch["qkv_bias"] << ", [cls] " << arch["class_token"] << ", registers "
            << arch["num_registers"] << ", layer_scale " << arch["layer_scale"] << ", pos_embed "
            << arch["pos_embed"].get<std::string>() << "\n"
            << "parameters:  " << info["num_params"] << " (encoder)\n";
  if (!info["classifier"].is_null()) std::cout << "classifier:  " << info["classifier"]["num_classes"] << " classes\n";
  std::cout << "ignored:     " << info["ignored_keys"].size() << " keys";
  size_t shown = 0;
  for (const auto& key : info["ignored_keys"]) {
    if (shown++ == 12) {
      std::cout << " ...";
      break;
    }
    std::cout << (shown == 1 ? ": " : ", ") << key.get<std::string>();
  }
  std::cout << "\n";
  for (const auto& entry : info["skipped_entries"]) std::cout << "skipped:     " << entry.get<std::string>() << "\n";
  for (const auto& note : info["notes"]) std::cout << "note:        " << note.get<std::string>() << "\n";
}

}  // namespace

Subcommand register_inspect(CLI::App& parent) {
  auto options = std::make_shared<InspectOptions>();
  auto* app = parent.add_subcommand("inspect", "Show a checkpoint's format, inferred architecture and ignored keys");
  app->add_option("--model", options->model, "Checkpoint (.safetensors, .pth/.pt torch.save archive)")->required();
  app->add_flag("--json", options->json, "Print JSON");
  add_load_options(*app, options->load);
  return {app, [options]() {
            const auto info = describe(load_model(options->model, options->load));
            if (options->json) {
              std::cout << info.dump(2) << "\n";
            } else {
              print_text(info);
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
