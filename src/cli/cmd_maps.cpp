// `vitprobe maps`: last-block [cls] attention per head and averaged, overlaid on each image, as grid PNGs.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/maps_job.h"
#include "model/compute_dtype.h"

namespace vitprobe::cli {

namespace {

struct MapsFlags {
  MapsOptions job;
  PreprocessFlags preprocess;
  CLI::Option* dtype_option = nullptr;
  int threads = 0;
  bool json = false;
};

}  // namespace

Subcommand register_maps(CLI::App& parent) {
  auto flags = std::make_shared<MapsFlags>();
  auto& job = flags->job;
  auto* app = parent.add_subcommand("maps", "Attention maps: for each image a grid PNG with the image and the "
                                            "last block's [cls] attention per head and averaged, overlaid");
  app->add_option("--model", job.model, "Checkpoint (.safetensors, .pth/.pt)")->required();
  app->add_option("--input", job.inputs, "Image files (JPEG/PNG/PPM)")->required();
  app->add_option("--out", job.out_dir, "Output folder")->required();
  app->add_option("--heads-dir", job.heads_dir,
                  "A probe run (or head folder): draw its heads' pooling weights (abmilp, ep, simpool, aim, vjepa, cattn, attn-*) too");
  app->add_option("--block", job.block, "Block whose attention to draw (negative: from the end)")->capture_default_str();
  app->add_option("--columns", job.columns, "Tiles per row (0: at most 7, rows balanced)")
      ->capture_default_str()
      ->check(non_negative(1024));
  app->add_option("--alpha", job.alpha, "Opacity of the heat map over the image")->capture_default_str()->check(number_in(0, 1));
  app->add_option("--colormap", job.color_map, "Heat map colours")
      ->capture_default_str()
      ->check(CLI::IsMember({"inferno", "viridis"}));
  app->add_option("--class-names", job.class_names, "File with one class name per line, for the classifier's top-1");
  app->add_flag("--json", flags->json, "Print maps.json");
  flags->dtype_option = add_analysis_encoder_options(*app, job.load, flags->preprocess, flags->threads);
  return {app, [flags]() {
            apply_threads(flags->threads);
            auto& job = flags->job;
            if (!flags->dtype_option->count()) job.load.dtype = default_compute_dtype(job.load.device);
            job.preprocess = flags->preprocess.settings();
            const auto summary = run_maps_job(job);
            if (flags->json) {
              std::cout << summary.dump(2) << "\n";
            } else {
              for (const auto& image : summary["images"]) {
                std::cout << job.out_dir << "/" << image["file"].get<std::string>() << "  ("
                          << image["input"].get<std::string>() << ")\n";
              }
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
