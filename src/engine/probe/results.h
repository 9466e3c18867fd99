#pragma once
// The results of a probe run: results.json (machine-readable, everything) and results.md (one table).
//
// results.json of one seed:
//   {"format": "vitprobe-probe-results", "version": 1, "status": "complete",
//    "config": {...every option, the model path and SHA-256...}, "seed": S, "versions": {...},
//    "timing": {"extract_seconds", "train_seconds", "eval_seconds", "epoch_seconds": [...]},
//    "heads": [{"head", "type", "trainable_parameters", "selected_on": "train-holdout" | "val", "best_lr",
//               "best_peak_lr", "best_epoch", "top1", "top5", "holdout_top1", "lr_at_grid_edge": bool | null,
//               "seconds", "saved": "heads/<folder>",
//               "runs": [{"base_lr", "lr", "train_loss": [...per epoch], "val": [{"epoch", "top1", "top5"}],
//                         "holdout": [{"epoch", "top1", "top5"}], "holdout_top1",
//                         "best_epoch", "top1", "top5", "seconds"}]},
// best_lr / best_epoch are the choice made on the held-out part of the training split (config.select_on
// "train-holdout", the default) or on the validation split ("val"); top1 / top5 are validation accuracies at
// that choice, holdout_top1 the chooser's accuracy. Every run keeps its whole held-out and validation history.
//              {"head": "knn", "type": "knn", "trainable_parameters": 0, "best_k", "top1", "top5",
//               "runs": [{"k", "temperature", "top1", "top5"}]}]}
// With several seeds the folder's results.json has "seeds": [...], per head the mean and standard deviation
// (population, over seeds) of top-1 and top-5 at each seed's chosen rate and epoch ("top1", "top1_std", ...,
// "holdout_top1", "holdout_top1_std", "best_lr_per_seed", "best_epoch_per_seed", "lr_at_grid_edge_per_seed" and
// "lr_at_grid_edge": true when any seed's is; per rate "runs": [{"base_lr", "top1", "top1_std", "holdout_top1",
// "holdout_top1_std"}]), and "per_seed" results in seed-S/results.json. k-NN entries carry "selected_on" and
// "holdout_top1" (the chosen k's), and "holdout_top1" per k.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "probe/knn.h"
#include "probe/trainer.h"

namespace vitprobe {

/// The "heads" entries of a trained run; `saved` maps a head name to its saved folder (relative).
nlohmann::json trained_head_results(const ProbeTrainer& trainer, const std::map<std::string, std::string>& saved);

/// The "heads" entry of a k-NN head: k chosen by the `holdout` accuracies (same order as `accuracies`) when
/// given, else by the validation ones; top1/top5 are validation accuracies at that k.
nlohmann::json knn_head_results(const HeadSpec& spec, const std::vector<KnnAccuracy>& accuracies, double temperature,
                                const std::vector<KnnAccuracy>& holdout = {});

/// The index of the chosen run of `head` in trainer.runs() (highest selection top-1: held-out, or validation
/// with --select-on val; first on ties), -1 if none.
int best_run_index(const ProbeTrainer& trainer, const std::string& head);

/// Whether `chosen` is the lowest or highest of `grid`; nullopt when the grid has fewer than 3 distinct values
/// (nothing to bracket).
std::optional<bool> at_grid_edge(const std::vector<double>& grid, double chosen);

/// The stderr line for a head whose best rate is at the grid's edge ("... widen --lrs").
std::string edge_warning(const std::string& head, double chosen, const std::vector<double>& grid);

/// Mean and standard deviation over seeds of per-seed results.json documents.
nlohmann::json aggregate_seeds(const std::vector<nlohmann::json>& per_seed, const nlohmann::json& config);

/// The results.md text of a results.json document (one seed or aggregated).
std::string results_markdown(const nlohmann::json& results);

/// Writes DIR/results.json and DIR/results.md, atomically.
void write_results(const std::string& dir, const nlohmann::json& results);

}  // namespace vitprobe
