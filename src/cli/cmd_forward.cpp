// `vitprobe forward`: tokens, block outputs, attention maps and logits of a checkpoint on images or a batch.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/forward_job.h"

namespace vitprobe::cli {
namespace {

struct ForwardFlags {
  ForwardJobOptions job;
  PreprocessFlags preprocess;
  int threads = 0;
  bool json = false;
};

void print_top(const nlohmann::json& summary) {
  if (!summary.contains("top")) {
    std::cout << "tokens " << summary["tokens_shape"].dump() << " written (the checkpoint has no classifier head)\n";
    return;
  }
  const auto& inputs = summary["inputs"];
  for (size_t image = 0; image < summary["top"].size(); ++image) {
    const std::string name = inputs.size() == summary["top"].size() ? inputs[image].get<std::string>()
                                                                      : "item " + std::to_string(image);
    std::cout << name << "\n";
    for (const auto& item : summary["top"][image]) {
      char line[64];
      std::snprintf(line, sizeof line, "  %6.2f%%  %4lld  ", 100.0 * item["prob"].get<double>(),
                    static_cast<long long>(item["index"].get<int64_t>()));
      std::cout << line << (item.contains("name") ? item["name"].get<std::string>() : std::string()) << "\n";
    }
  }
}

}  // namespace

Subcommand register_forward(CLI::App& parent) {
  auto flags = std::make_shared<ForwardFlags>();
  auto& job = flags->job;
  auto* app = parent.add_subcommand("forward", "Run a checkpoint on images or a .npy batch; write tokens, block "
                                               "outputs, attention maps and logits as .npy");
  app->add_option("--model", job.model, "Checkpoint (.safetensors, .pth/.pt)")->required();
  app->add_option("--input", job.inputs, "Image files (JPEG/PNG/PPM), or one .npy float32 (B,3,H,W) normalised")
      ->required();
  app->add_option("--out", job.out_dir, "Output folder")->required();
  app->add_option("--blocks", job.blocks, "Blocks whose outputs to write: all, last or I,J,... (0-based)");
  app->add_flag("--attn", job.attention, "Write attention probabilities attn{I}.npy (B,heads,T,T)");
  app->add_option("--topk", job.topk, "Classes to print when the checkpoint has a classifier")
      ->capture_default_str()
      ->check(number_in(0, 1e6));
  app->add_option("--class-names", job.class_names, "File with one class name per line");
  app->add_flag("--json", flags->json, "Print the summary (forward.json) instead of a table");
  add_load_options(*app, job.load);
  add_preprocess_options(*app, flags->preprocess);
  add_threads_option(*app, flags->threads);
  return {app, [flags]() {
            apply_threads(flags->threads);
            flags->job.preprocess = flags->preprocess.settings();
            const auto summary = run_forward_job(flags->job);
            if (flags->json) {
              std::cout << summary.dump(2) << "\n";
            } else {
              print_top(summary);
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
