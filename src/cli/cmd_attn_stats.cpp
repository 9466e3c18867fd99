// `vitprobe attn-stats`: the paper's information-flow statistics per block, for one or more encoders.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/attn_stats_job.h"
#include "model/compute_dtype.h"

namespace vitprobe::cli {
namespace {

struct AttnStatsFlags {
  AttnStatsOptions job;
  PreprocessFlags preprocess;
  CLI::Option* dtype_option = nullptr;
  int threads = 0;
  bool json = false;
  bool quiet = false;
};

// One line per statistic and model: the head-averaged mean of every block.
void print_table(const nlohmann::json& summary) {
  for (const auto& model : summary["models"]) {
    std::printf("%s: %lld images, %d blocks, %d heads, %.1f s\n", model["label"].get<std::string>().c_str(),
                static_cast<long long>(model["num_images"].get<int64_t>()), model["depth"].get<int>(),
                model["num_heads"].get<int>(), model["seconds"].get<double>());
    for (const auto& name : summary["statistic_names"]) {
      const auto key = name.get<std::string>();
      if (!model["statistics"].contains(key)) continue;
      std::printf("  %-31s", key.c_str());
      for (const auto& value : model["statistics"][key]["mean"]) std::printf(" %6.3f", value.get<double>());
      std::printf("\n");
    }
  }
  std::printf("written: %s\n", summary["files"].dump().c_str());
}

}  // namespace

Subcommand register_attn_stats(CLI::App& parent) {
  auto flags = std::make_shared<AttnStatsFlags>();
  auto& job = flags->job;
  auto* app = parent.add_subcommand("attn-stats", "Attention statistics per block ([cls]/patch self-attention, "
                                                  "entropies, magnitudes) over a dataset, for one or more models; "
                                                  "stats.json, stats.csv and figures");
  app->add_option("--model", job.models, "Checkpoint; repeat to compare models in one figure")->required();
  app->add_option("--label", job.labels, "Name of each model in the figure, in --model order (default: file stem)");
  add_analysis_data_options(*app, job.data, job.class_names);
  app->add_option("--out", job.out_dir, "Output folder")->required();
  app->add_option("--batch-size", job.batch_size, "Images per forward pass (0: as many as keep all blocks' attention "
                                                  "under 1 GiB, at most 256)")
      ->capture_default_str()
      ->check(non_negative(kMaxBatch));
  app->add_option("--workers", job.num_workers, "Image decoding threads")->capture_default_str()->check(thread_count(1));
  app->add_flag("--std-bands", job.std_bands, "Shade mean +- std over images in the figure");
  app->add_flag("--quiet", flags->quiet, "No progress bar");
  app->add_flag("--json", flags->json, "Print stats.json instead of a table");
  flags->dtype_option = add_analysis_encoder_options(*app, job.load, flags->preprocess, flags->threads);
  add_dist_options(*app, job.dist);
  return {app, [flags]() {
            apply_threads(flags->threads);
            auto& job = flags->job;
            if (!flags->dtype_option->count()) job.load.dtype = default_compute_dtype(job.load.device);
            job.preprocess = flags->preprocess.settings();
            job.progress = !flags->quiet;
            const auto summary = run_attn_stats_job(job);
            if (!prints_output(job.dist)) return 0;
            if (flags->json) {
              std::cout << summary.dump(2) << "\n";
            } else {
              print_table(summary);
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
