// `vitprobe probe`: train many probe heads x learning rates on a frozen encoder in one pass; results and heads.
// Also holds the option group that probe, evaluate and extract share (add_feature_options).
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "common/errors.h"
#include "jobs/probe_job.h"

namespace vitprobe::cli {

void add_probe_load_options(CLI::App& app, LoadOptions& options) {
  add_load_options(app, options);
  // --heads names the probe heads in these commands: keep --num-heads without its --heads alias.
  app.remove_option(app.get_option("--num-heads"));
  app.add_option("--num-heads", options.num_heads, "Attention heads (0: from --arch, metadata, or width/64 convention)")
      ->capture_default_str()
      ->check(number_in(0, 4096));
}

void add_feature_options(CLI::App& app, FeatureOptions& options, PreprocessFlags& preprocess, std::string& final_norm) {
  app.add_option("--model", options.model, "Checkpoint (.safetensors, .pth/.pt)")->required();
  app.add_option("--data", options.data,
                 "Dataset: imagefolder:DIR, fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR, stl10:DIR, "
                 "fmnist-clutter[:SEED[:DIR]]")
      ->required();
  app.add_option("--train-split", options.train_split, "Training split")->capture_default_str();
  app.add_option("--val-split", options.val_split, "Validation split")->capture_default_str();
  app.add_option("--limit", options.train_limit, "Keep N training items (class-balanced; 0: all)")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--val-limit", options.val_limit, "Keep N validation items (class-balanced; 0: all)")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--limit-seed", options.limit_seed, "Seed of the --limit subsets")->capture_default_str();
  app.add_option("--block", options.block, "Probed block (0-based; negative counts from the end)")->capture_default_str();
  app.add_option("--final-norm", final_norm, "Apply the final LayerNorm to the probed tokens (off = official beyond_cls code)")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--oracle-model", options.oracle_model,
                 "Checkpoint whose last-block [cls] attention (mean over heads) weights the patches of the dino "
                 "head; it sees the same normalised images (same --dtype, --device, --img-size; its own key map "
                 "and head count) and needs a [cls] token and the encoder's patch grid")
      ->default_str("none");
  app.add_option("--cache-dir", options.cache_dir, "Cached features folder")->default_str(default_cache_dir());
  app.add_option("--batch,--batch-size", options.batch_size, "Batch size (images per encoder forward and per step)")
      ->capture_default_str()
      ->check(number_in(1, kMaxBatch));
  app.add_option("--workers", options.workers, "Image decoding threads")->capture_default_str()->check(thread_count(1));
  app.add_flag("--quiet", [&options](int64_t) { options.progress = false; }, "No progress lines on stderr");
  add_probe_load_options(app, options.load);
  add_preprocess_options(app, preprocess);
}

namespace {

struct ProbeFlags {
  ProbeJobOptions job;
  PreprocessFlags preprocess;
  std::string final_norm = "off";
  uint64_t seed = 0;
  CLI::Option* seed_option = nullptr;
  CLI::Option* momentum_option = nullptr;
  int threads = 0;
  bool json = false;
};

}  // namespace

Subcommand register_probe(CLI::App& parent) {
  auto flags = std::make_shared<ProbeFlags>();
  auto& job = flags->job;
  auto* app = parent.add_subcommand("probe", "Train probe heads ([cls], mean, AbMILP, EP, SimPool, ...) x learning rates "
                                             "on a frozen encoder in one pass; write results and heads");
  add_feature_options(*app, job.features, flags->preprocess, flags->final_norm);
  app->add_option("--heads", job.heads, "Heads, e.g. cls,mean,abmilp,ep:32 (see below)")->required();
  app->add_option("--lrs", job.base_lrs, "Base learning rates, each scaled by effective batch / 256")
      ->delimiter(',')
      ->default_str("13 log-spaced values: lars and sgd 1e-3..10, adamw 1e-6..1e-2")
      ->check(positive());
  app->add_option("--select-on", job.select_on, "What chooses each head's rate and epoch: train-holdout (a held-out "
                                                "part of the training split; val accuracy reported at that choice) "
                                                "or val (the reported split itself: optimistic)")
      ->capture_default_str()
      ->check(CLI::IsMember({"train-holdout", "val"}));
  app->add_option("--holdout-fraction", job.holdout_fraction, "Fraction of the training split held out (stratified)")
      ->capture_default_str()
      ->check(number_in(0, 0.5, true));
  app->add_option("--holdout-seed", job.holdout_seed, "Seed of the held-out items (the same for every --seeds entry)")
      ->capture_default_str();
  app->add_option("--head-init", job.head_init, "Classifier init: pytorch (nn.Linear, as beyond_cls / EP) or mae "
                                                "(N(0, 0.01), bias 0, as MAE main_linprobe.py)")
      ->capture_default_str()
      ->check(CLI::IsMember({"pytorch", "mae"}));
  app->add_option("--blr", job.blr, "One base learning rate instead of the grid")->check(positive());
  app->add_option("--epochs", job.epochs, "Epochs")->capture_default_str()->check(number_in(1, 1e6));
  app->add_option("--warmup-epochs", job.warmup_epochs, "Linear warm-up epochs, then half-cosine")
      ->capture_default_str()
      ->check(non_negative());
  app->add_option("--min-lr", job.min_lr, "Learning rate at the end of the cosine")->capture_default_str()->check(non_negative());
  app->add_option("--accum-iter", job.accum_iter, "Batches per optimizer step (gradient accumulation)")
      ->capture_default_str()
      ->check(number_in(1, kMaxBatch));
  app->add_option("--optimizer", job.optimizer.kind, "Optimizer")
      ->capture_default_str()
      ->check(CLI::IsMember({"lars", "sgd", "adamw"}));
  flags->momentum_option = app->add_option("--momentum", job.optimizer.momentum, "Momentum (lars; sgd: 0, the official "
                                                                                "default, unless given)")
                               ->capture_default_str()
                               ->check(number_in(0, 1));
  app->add_option("--weight-decay", job.optimizer.weight_decay, "Weight decay (lars, adamw: not on biases / 1-d "
                                                                "parameters; sgd: on all, as the official code)")
      ->capture_default_str()
      ->check(non_negative());
  app->add_option("--crop-sampler", job.features.crop_sampler, "Training crop (online features): mae (util/crop.py, "
                                                                "one draw) or torchvision (ten tries)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mae", "torchvision"}));
  app->add_option("--features", job.mode, "online: encoder every batch with the train transform; cached: one eval-"
                                          "transform pass per split stored as bf16 and reused")
      ->capture_default_str()
      ->check(CLI::IsMember({"online", "cached"}));
  flags->seed_option = app->add_option("--seed", flags->seed, "Seed of head initialisation, order and augmentation")
                           ->capture_default_str();
  app->add_option("--seeds", job.seeds, "Repeat the run for these seeds; report mean and std")
      ->delimiter(',')
      ->excludes(flags->seed_option);
  app->add_option("--eval-every", job.eval_every, "Evaluate every N epochs (and after the last)")
      ->capture_default_str()
      ->check(number_in(1, 1e6));
  app->add_option("--knn-k", job.knn_k, "k values of knn heads")
      ->delimiter(',')
      ->default_str("10,20,100,200")
      ->check(number_in(1, 1e6));
  app->add_option("--knn-temperature", job.knn_temperature, "Temperature of knn votes")->capture_default_str()->check(positive());
  app->add_option("--out", job.out_dir, "Output folder")->required();
  app->add_flag("--resume", job.resume, "Continue an interrupted run in --out from its last completed epoch");
  app->add_option("--stop-after-epochs", job.stop_after_epochs, "Testing: stop after N epochs as if killed")
      ->check(non_negative())
      ->group("");
  app->add_flag("--json", flags->json, "Print results.json instead of the table");
  add_threads_option(*app, flags->threads);
  add_dist_options(*app, job.features.dist);
  app->add_option("--head-threads", job.head_threads, "Threads while the heads train (0: as --threads); their small "
                                                      "operations gain little from more (the encoder uses --threads)")
      ->capture_default_str()
      ->check(thread_count());
  app->footer("Heads: " + head_syntax_help() +
              ".\nEach head is aggregation -> BatchNorm1d(affine=False) -> Linear; every head is trained at every "
              "learning rate from the same forward pass. Each head's rate and epoch are chosen on a held-out part of "
              "the training split, and the validation accuracy at that choice is reported; a head whose chosen rate "
              "is at either end of the grid is flagged.");
  return {app, [flags]() {
            apply_threads(flags->threads);
            auto& job = flags->job;
            job.features.preprocess = flags->preprocess.settings();
            job.features.final_norm = flags->final_norm == "on";
            // beyond_cls main_linprobe.py:332 builds SGD without momentum.
            if (job.optimizer.kind == "sgd" && !flags->momentum_option->count()) job.optimizer.momentum = 0.0;
            if (flags->seed_option->count()) job.seeds = {flags->seed};
            // A seed given twice would train the same run twice and report a std of 0 for it.
            for (size_t i = 0; i < job.seeds.size(); ++i) {
              for (size_t j = 0; j < i; ++j) {
                if (job.seeds[i] == job.seeds[j]) {
                  throw BadInput("--seeds: seed " + std::to_string(job.seeds[i]) + " is given twice");
                }
              }
            }
            const auto results = run_probe_job(job);
            if (!prints_output(job.features.dist)) return 0;
            if (results.value("status", "") == "stopped") {
              std::cout << "stopped after epoch " << results["completed_epochs"].get<int64_t>()
                        << " (continue with --resume)\n";
            } else if (flags->json) {
              std::cout << results.dump(2) << "\n";
            } else {
              std::cout << results_markdown(results);
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
