// `vitprobe demo`: the paper's comparison on the bundled encoders, with a report.
#include "cli_common.h"
#include "jobs/demo_job.h"

#include <nlohmann/json.hpp>

namespace vitprobe::cli {

Subcommand register_demo(CLI::App& parent) {
  auto options = std::make_shared<DemoOptions>();
  auto threads = std::make_shared<int>(0);
  auto* app = parent.add_subcommand("demo", "MAE vs DINO on the bundled encoders: attention statistics, probes "
                                            "(lr grid, cached features, seeds), per-claim verdicts, figures and a "
                                            "report (report.md, index.html)");
  app->add_option("--models-dir", options->models_dir, "Folder with the bundled encoders")->capture_default_str();
  app->add_option("--shared", options->shared_dir, "Shared folder with the supervised ViT-Tiny (used when present)")
      ->capture_default_str();
  app->add_option("--data", options->data, "Dataset spec")->capture_default_str();
  app->add_option("--out", options->out_dir, "Report folder")->capture_default_str();
  app->add_flag("--quick", options->quick, "Smoke run: 64 stats images, 500/200 probe images, 2 epochs, 2 lrs, 1 seed, "
                                           "200 t-SNE images");
  app->add_option("--stats-images", options->stats_images, "Val images for attention statistics")->capture_default_str()->check(number_in(1, 1e9));
  app->add_option("--train-images", options->train_images, "Train images for the probes")->capture_default_str()->check(number_in(1, 1e9));
  app->add_option("--val-images", options->val_images, "Val images for the probes")->capture_default_str()->check(number_in(1, 1e9));
  app->add_option("--epochs", options->epochs, "Probe epochs")->capture_default_str()->check(number_in(1, 1e6));
  app->add_option("--seeds", options->seeds, "Probe seeds 0..N-1 (head init, data order): accuracies are mean ± std over them")
      ->capture_default_str()
      ->check(number_in(1, 100));
  app->add_option("--tsne-images", options->tsne_images, "Val images in the t-SNE figure")
      ->capture_default_str()
      ->check(number_in(3, 1e6));
  app->add_option("--lrs", options->base_lrs, "LARS base learning rates of the probes")
      ->delimiter(',')
      ->default_str("0.3,1,3,10,30,100,300")
      ->check(positive());
  app->add_option("--heads", options->heads, "Probe heads")->capture_default_str();
  add_threads_option(*app, *threads);
  return {app, [options, threads]() {
            apply_threads(*threads);
            run_demo(*options);
            return 0;
          }};
}

}  // namespace vitprobe::cli
