// `vitprobe extract`: store the cached features that `vitprobe probe --features cached` reads.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/extract_job.h"

namespace vitprobe::cli {
namespace {

struct ExtractFlags {
  ExtractJobOptions job;
  PreprocessFlags preprocess;
  std::string final_norm = "off";
  int threads = 0;
  bool json = false;
};

}  // namespace

Subcommand register_extract(CLI::App& parent) {
  auto flags = std::make_shared<ExtractFlags>();
  auto& job = flags->job;
  auto* app = parent.add_subcommand("extract", "Run the encoder once per split and store the features probe heads read "
                                               "(bf16, memory-mapped, reused by probe --features cached)");
  add_feature_options(*app, job.features, flags->preprocess, flags->final_norm);
  app->add_option("--heads", job.heads, "Store what these heads read (tokens for learned poolings)")->capture_default_str();
  app->add_option("--splits", job.splits, "Splits to extract")->delimiter(',')->default_str("train,val");
  app->add_flag("--json", flags->json, "Print JSON");
  add_threads_option(*app, flags->threads);
  add_dist_options(*app, job.features.dist);
  app->footer("Heads: " + head_syntax_help() + ".");
  return {app, [flags]() {
            apply_threads(flags->threads);
            flags->job.features.preprocess = flags->preprocess.settings();
            flags->job.features.final_norm = flags->final_norm == "on";
            const auto summary = run_extract_job(flags->job);
            if (!prints_output(flags->job.features.dist)) return 0;
            if (flags->json) {
              std::cout << summary.dump(2) << "\n";
            } else {
              for (const auto& [split, entry] : summary["splits"].items()) {
                std::cout << split << ": " << entry["items"].get<int64_t>() << " items in "
                          << entry["folder"].get<std::string>() << "\n";
              }
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
