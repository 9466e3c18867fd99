// `vitprobe data`: what a --data spec holds (sizes, classes, per-class counts); with --verify, one pass of
// the loader over every item, reporting bad files and throughput.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_common.h"
#include "jobs/data_job.h"

namespace vitprobe::cli {
namespace {

struct DataFlags {
  DataJobOptions job;
  PreprocessFlags preprocess;
  bool json = false;
};

void print_summary(const nlohmann::json& summary) {
  std::cout << "dataset  " << summary["dataset"].get<std::string>() << "\n";
  std::cout << "items    " << summary["size"] << "\n";
  std::cout << "classes  " << summary["num_classes"] << "\n";
  const auto& size = summary["image_size"];
  const std::string image_size =
      size.is_null() ? "varies (decoded per file)"
                     : std::to_string(size[0].get<int>()) + "x" + std::to_string(size[1].get<int>());
  std::cout << "image    " << image_size << "\n";
  std::cout << "label  items  class\n";
  for (const auto& item : summary["classes"]) {
    char line[64];
    std::snprintf(line, sizeof line, "%5lld  %5lld  ", static_cast<long long>(item["label"].get<int64_t>()),
                  static_cast<long long>(item["count"].get<int64_t>()));
    std::cout << line << item["name"].get<std::string>() << "\n";
  }
}

void print_verify(const nlohmann::json& verify) {
  char line[160];
  std::snprintf(line, sizeof line,
                "verify   %lld loaded, %lld skipped in %.2f s (%.1f img/s, %s preset, %s, %d workers)",
                static_cast<long long>(verify["loaded"].get<int64_t>()),
                static_cast<long long>(verify["skipped"].get<int64_t>()), verify["seconds"].get<double>(),
                verify["images_per_s"].get<double>(), verify["preset"].get<std::string>().c_str(),
                verify["dtype"].get<std::string>().c_str(), verify["workers"].get<int>());
  std::cout << line << "\n";
  for (const auto& item : verify["skipped_items"]) std::cout << "skipped  " << item["error"].get<std::string>() << "\n";
}

}  // namespace

Subcommand register_data(CLI::App& parent) {
  auto flags = std::make_shared<DataFlags>();
  auto& job = flags->job;
  auto* app = parent.add_subcommand("data", "Show what a dataset spec holds: sizes, classes, per-class counts; "
                                            "--verify loads every item");
  std::string formats;
  for (const auto& name : dataset_format_names()) formats += (formats.empty() ? "" : ", ") + name;
  app->add_option("--data", job.spec.text,
                  "Dataset: imagefolder:DIR, fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR, stl10:DIR, "
                  "fmnist-clutter[:SEED[:DIR]]")
      ->required();
  app->add_option("--split", job.spec.split, "Split")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "val", "test"}));
  app->add_option("--limit", job.spec.limit, "Keep N items (seeded shuffle, class-balanced; 0: all)")
      ->capture_default_str()
      ->check(non_negative());
  app->add_option("--seed", job.spec.seed, "Seed of --limit and of the loader")->capture_default_str();
  app->add_flag("--json", flags->json, "Print JSON instead of a table");
  app->add_flag("--verify", job.verify,
                "Decode and transform every item with the loader; report bad files and img/s");
  app->add_flag("--skip-bad", job.loader.skip_bad, "With --verify: skip and count items that fail to load");
  app->add_option("--preset", job.preset, "With --verify: transform preset")
      ->capture_default_str()
      ->check(CLI::IsMember({"eval", "train"}));
  app->add_option("--batch-size", job.loader.batch_size, "With --verify: batch size")
      ->capture_default_str()
      ->check(number_in(1, kMaxBatch));
  app->add_option("--workers", job.loader.num_workers, "With --verify: loader threads")
      ->capture_default_str()
      ->check(thread_count(1));
  app->add_option("--dtype", job.dtype, "With --verify: batch dtype")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  add_preprocess_options(*app, flags->preprocess);
  app->footer("Formats: " + formats + ". --split test is the same as val.");
  return {app, [flags]() {
            if (flags->job.verify) flags->job.preprocess = flags->preprocess.settings();
            flags->job.progress = !flags->json;
            const auto summary = run_data_job(flags->job);
            if (flags->json) {
              std::cout << summary.dump(2) << "\n";
            } else {
              print_summary(summary);
              if (summary.contains("verify")) print_verify(summary["verify"]);
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
