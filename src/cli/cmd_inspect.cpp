// `vitprobe inspect`: what a checkpoint holds and how vitprobe reads it.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/inspect_job.h"

namespace vitprobe::cli {
namespace {

struct InspectFlags {
  InspectJobOptions job;
  bool json = false;
};

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
            << arch["pos_embed"].get<std::string>();
  if (arch["rel_pos_bias"].get<bool>() || arch["shared_rel_pos_bias"].get<bool>()) {
    std::cout << ", relative position bias "
              << (arch["rel_pos_bias"].get<bool>() ? (arch["shared_rel_pos_bias"].get<bool>() ? "per block + shared" : "per block")
                                                   : "shared");
  }
  std::cout << "\n"
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
  auto flags = std::make_shared<InspectFlags>();
  auto* app = parent.add_subcommand("inspect", "Show a checkpoint's format, inferred architecture and ignored keys");
  app->add_option("--model", flags->job.model, "Checkpoint (.safetensors, .pth/.pt torch.save archive)")->required();
  app->add_flag("--json", flags->json, "Print JSON");
  add_load_options(*app, flags->job.load);
  return {app, [flags]() {
            const auto info = run_inspect_job(flags->job);
            if (flags->json) {
              std::cout << info.dump(2) << "\n";
            } else {
              print_text(info);
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
