// `vitprobe evaluate`: re-score heads saved by `vitprobe probe` on a split, with their own preprocessing.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/evaluate_job.h"

namespace vitprobe::cli {
namespace {

struct EvaluateFlags {
  EvaluateJobOptions job;
  int threads = 0;
  bool json = false;
};

void print_table(const nlohmann::json& summary) {
  std::cout << "| head | top-1 | top-5 | top-1 when trained |\n|---|---|---|---|\n";
  for (const auto& head : summary["heads"]) {
    char line[256];
    std::snprintf(line, sizeof line, "| %s | %.2f | %.2f | %.2f |\n", head["head"].get<std::string>().c_str(),
                  head["top1"].get<double>(), head["top5"].get<double>(), head["trained_top1"].get<double>());
    std::cout << line;
  }
  for (const auto& note : summary["notes"]) std::cout << "note: " << note.get<std::string>() << "\n";
}

}  // namespace

Subcommand register_evaluate(CLI::App& parent) {
  auto flags = std::make_shared<EvaluateFlags>();
  auto& job = flags->job;
  auto* app = parent.add_subcommand("evaluate", "Re-score probe heads saved by `vitprobe probe` on a dataset split");
  add_probe_load_options(*app, job.load);  // before --heads: it removes the --heads alias of --num-heads
  app->add_option("--heads", job.heads_dir, "A probe output folder (its heads/) or one head folder")->required();
  app->add_option("--model", job.model, "Checkpoint the heads were trained on")->required();
  app->add_option("--data", job.data, "Dataset spec (as for probe)")->required();
  app->add_option("--split", job.split, "Split")->capture_default_str();
  app->add_option("--limit", job.limit, "Keep N items (class-balanced; 0: all)")->capture_default_str()->check(non_negative());
  app->add_option("--limit-seed", job.limit_seed, "Seed of --limit")->capture_default_str();
  app->add_option("--batch,--batch-size", job.batch_size, "Batch size")->capture_default_str()->check(number_in(1, kMaxBatch));
  app->add_option("--workers", job.workers, "Image decoding threads")->capture_default_str()->check(thread_count(1));
  app->add_option("--out", job.out, "Also write evaluate.json in this folder");
  app->add_flag("--json", flags->json, "Print JSON instead of a table");
  app->add_flag("--quiet", [flags](int64_t) { flags->job.progress = false; }, "No progress lines on stderr");
  app->get_option("--img-size")->default_str("the heads' (0)");
  add_threads_option(*app, flags->threads);
  return {app, [flags]() {
            apply_threads(flags->threads);
            const auto summary = run_evaluate_job(flags->job);
            if (flags->json) {
              std::cout << summary.dump(2) << "\n";
            } else {
              print_table(summary);
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
