// `vitprobe embed`: a 2-D t-SNE of [cls] or mean-patch features, as a scatter plot coloured by class.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/embed_job.h"
#include "model/compute_dtype.h"

namespace vitprobe::cli {

namespace {

struct EmbedFlags {
  EmbedOptions job;
  PreprocessFlags preprocess;
  std::string method = "auto";
  CLI::Option* dtype_option = nullptr;
  int threads = 0;
  bool json = false;
  bool quiet = false;
};

}  // namespace

Subcommand register_embed(CLI::App& parent) {
  auto flags = std::make_shared<EmbedFlags>();
  auto& job = flags->job;
  auto* app = parent.add_subcommand("embed", "2-D t-SNE of an encoder's features over a dataset: scatter plot "
                                             "coloured by class (PNG/SVG) and the points as CSV");
  app->add_option("--model", job.model, "Checkpoint (.safetensors, .pth/.pt)")->required();
  add_analysis_data_options(*app, job.data, job.class_names);
  app->add_option("--features", job.features, "Representation: [cls] token, mean of patch tokens, or the pooling of a "
                                               "trained abmilp head (needs --heads-dir)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cls", "mean", "abmilp"}));
  app->add_option("--heads-dir", job.heads_dir, "A probe run (or head folder) with a trained pooling head, for --features abmilp");
  app->add_flag("--final-norm", job.final_norm, "Apply the final LayerNorm before pooling (the official code does not)");
  app->add_option("--out", job.out_dir, "Output folder")->required();
  app->add_option("--method", flags->method, "t-SNE gradient: auto (exact up to 2000 points, then Barnes-Hut), "
                                             "exact or barnes-hut")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "exact", "barnes-hut"}));
  app->add_option("--perplexity", job.tsne.perplexity, "t-SNE perplexity (lowered to (N-1)/3 for small sets)")
      ->capture_default_str()
      ->check(positive());
  app->add_option("--iterations", job.tsne.iterations, "t-SNE iterations")->capture_default_str()->check(number_in(1, 100000));
  app->add_option("--theta", job.tsne.theta, "Barnes-Hut accuracy")->capture_default_str()->check(number_in(0, 1));
  app->add_option("--pca-dims", job.tsne.pca_dims, "Reduce wider features to this many principal components first")
      ->capture_default_str()
      ->check(non_negative(65536));
  app->add_option("--batch-size", job.batch_size, "Images per forward pass")->capture_default_str()->check(number_in(1, kMaxBatch));
  app->add_option("--workers", job.num_workers, "Image decoding threads")->capture_default_str()->check(thread_count(1));
  app->add_flag("--save-features", job.save_features, "Also write features.npy (N, D)");
  app->add_flag("--quiet", flags->quiet, "No progress bars");
  app->add_flag("--json", flags->json, "Print embed.json");
  flags->dtype_option = add_analysis_encoder_options(*app, job.load, flags->preprocess, flags->threads);
  return {app, [flags]() {
            apply_threads(flags->threads);
            auto& job = flags->job;
            if (!flags->dtype_option->count()) job.load.dtype = default_compute_dtype(job.load.device);
            job.preprocess = flags->preprocess.settings();
            job.progress = !flags->quiet;
            job.tsne.method = parse_tsne_method(flags->method);
            const auto summary = run_embed_job(job);
            if (flags->json) {
              std::cout << summary.dump(2) << "\n";
            } else {
              const auto& tsne = summary["tsne"];
              std::printf("%lld points, %s t-SNE (perplexity %.1f), KL %.4f; features %.1f s, t-SNE %.1f s\n",
                          static_cast<long long>(summary["num_points"].get<int64_t>()),
                          tsne["method"].get<std::string>().c_str(), tsne["perplexity"].get<double>(),
                          tsne["kl_divergence"].get<double>(), summary["seconds"]["features"].get<double>(),
                          summary["seconds"]["tsne"].get<double>());
              std::printf("written: %s\n", summary["files"].dump().c_str());
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
