#include "probe/results.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

#include "io/atomic_file.h"

namespace vitprobe {
namespace {

std::string format_number(double value, const char* format) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

std::pair<double, double> mean_and_std(const std::vector<double>& values) {
  if (values.empty()) return {0, 0};
  double sum = 0;
  for (double v : values) sum += v;
  const double mean = sum / values.size();
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(squares / values.size())};
}

}  // namespace

int best_run_index(const ProbeTrainer& trainer, const std::string& head) {
  int best = -1;
  const auto& runs = trainer.runs();
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].spec.name != head) continue;
    if (best < 0 || runs[i].selection_top1 > runs[best].selection_top1) best = static_cast<int>(i);
  }
  return best;
}

std::optional<bool> at_grid_edge(const std::vector<double>& grid, double chosen) {
  std::vector<double> distinct(grid);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (distinct.size() < 3) return std::nullopt;
  return chosen == distinct.front() || chosen == distinct.back();
}

std::string edge_warning(const std::string& head, double chosen, const std::vector<double>& grid) {
  const auto [low, high] = std::minmax_element(grid.begin(), grid.end());
  return "probe: " + head + ": best rate " + format_number(chosen, "%g") + " at the grid's edge (" +
         format_number(*low, "%g") + " .. " + format_number(*high, "%g") + "): widen --lrs";
}

nlohmann::json trained_head_results(const ProbeTrainer& trainer, const std::map<std::string, std::string>& saved) {
  nlohmann::json heads = nlohmann::json::array();
  std::vector<std::string> order;
  for (const auto& run : trainer.runs()) {
    if (std::find(order.begin(), order.end(), run.spec.name) == order.end()) order.push_back(run.spec.name);
  }
  for (const auto& name : order) {
    nlohmann::json runs = nlohmann::json::array();
    double seconds = 0;
    std::vector<double> grid;
    for (const auto& run : trainer.runs()) {
      if (run.spec.name != name) continue;
      nlohmann::json val = nlohmann::json::array();
      for (const auto& m : run.val) val.push_back({{"epoch", m.epoch}, {"top1", m.top1}, {"top5", m.top5}});
      nlohmann::json item = {{"base_lr", run.base_lr}, {"lr", run.peak_lr}, {"train_loss", run.train_loss},
                             {"val", val}, {"best_epoch", run.best_epoch}, {"top1", run.best_top1},
                             {"top5", run.best_top5}, {"seconds", run.seconds}};
      if (!run.holdout.empty()) {
        nlohmann::json holdout = nlohmann::json::array();
        for (const auto& m : run.holdout) holdout.push_back({{"epoch", m.epoch}, {"top1", m.top1}, {"top5", m.top5}});
        item["holdout"] = holdout;
        item["holdout_top1"] = run.selection_top1;
      }
      runs.push_back(item);
      grid.push_back(run.base_lr);
      seconds += run.seconds;
    }
    const auto& best = trainer.runs()[best_run_index(trainer, name)];
    const bool holdout = !best.holdout.empty();
    nlohmann::json entry = {{"head", name},
                            {"type", head_kind_name(best.spec.kind)},
                            {"trainable_parameters", best.head->num_trainable_parameters()},
                            {"selected_on", holdout ? "train-holdout" : "val"},
                            {"best_lr", best.base_lr},
                            {"best_peak_lr", best.peak_lr},
                            {"best_epoch", best.best_epoch},
                            {"top1", best.best_top1},
                            {"top5", best.best_top5},
                            {"seconds", seconds},
                            {"runs", runs}};
    if (holdout) entry["holdout_top1"] = best.selection_top1;
    const auto edge = at_grid_edge(grid, best.base_lr);
    entry["lr_at_grid_edge"] = edge ? nlohmann::json(*edge) : nlohmann::json();
    const auto found = saved.find(name);
    if (found != saved.end()) entry["saved"] = found->second;
    heads.push_back(entry);
  }
  return heads;
}

nlohmann::json knn_head_results(const HeadSpec& spec, const std::vector<KnnAccuracy>& accuracies, double temperature,
                                const std::vector<KnnAccuracy>& holdout) {
  nlohmann::json runs = nlohmann::json::array();
  size_t best = 0;
  for (size_t i = 0; i < accuracies.size(); ++i) {
    const auto& accuracy = accuracies[i];
    nlohmann::json run = {{"k", accuracy.k}, {"temperature", temperature}, {"top1", accuracy.top1}, {"top5", accuracy.top5}};
    if (!holdout.empty()) run["holdout_top1"] = holdout.at(i).top1;
    runs.push_back(run);
    const auto chooser = [&](size_t j) { return holdout.empty() ? accuracies[j].top1 : holdout.at(j).top1; };
    if (chooser(i) > chooser(best)) best = i;
  }
  const bool any = !accuracies.empty();
  nlohmann::json entry = {{"head", spec.name}, {"type", "knn"}, {"trainable_parameters", 0},
                          {"selected_on", holdout.empty() ? "val" : "train-holdout"},
                          {"best_k", any ? accuracies[best].k : 0}, {"top1", any ? accuracies[best].top1 : 0.0},
                          {"top5", any ? accuracies[best].top5 : 0.0}, {"runs", runs}};
  if (!holdout.empty() && any) entry["holdout_top1"] = holdout.at(best).top1;
  return entry;
}

nlohmann::json aggregate_seeds(const std::vector<nlohmann::json>& per_seed, const nlohmann::json& config) {
  nlohmann::json out = {{"format", "vitprobe-probe-results"}, {"version", 1}, {"status", "complete"}, {"config", config}};
  std::vector<uint64_t> seeds;
  for (const auto& result : per_seed) seeds.push_back(result.at("seed"));
  out["seeds"] = seeds;
  if (!per_seed.empty()) out["versions"] = per_seed.front().value("versions", nlohmann::json::object());
  nlohmann::json heads = nlohmann::json::array();
  for (size_t h = 0; per_seed.size() && h < per_seed.front()["heads"].size(); ++h) {
    const auto& first = per_seed.front()["heads"][h];
    std::vector<double> top1, top5, seconds;
    nlohmann::json best_lrs = nlohmann::json::array();
    for (const auto& result : per_seed) {
      const auto& head = result["heads"][h];
      top1.push_back(head["top1"]);
      top5.push_back(head["top5"]);
      seconds.push_back(head.value("seconds", 0.0));
      best_lrs.push_back(head.contains("best_lr") ? head["best_lr"] : head["best_k"]);
    }
    const auto [top1_mean, top1_std] = mean_and_std(top1);
    const auto [top5_mean, top5_std] = mean_and_std(top5);
    std::vector<double> holdout_top1;
    nlohmann::json edges = nlohmann::json::array();
    for (const auto& result : per_seed) {
      const auto& head = result["heads"][h];
      if (head.contains("holdout_top1")) holdout_top1.push_back(head["holdout_top1"]);
      edges.push_back(head.value("lr_at_grid_edge", nlohmann::json()));
    }
    nlohmann::json entry = {{"head", first["head"]}, {"type", first["type"]},
                            {"trainable_parameters", first["trainable_parameters"]},
                            {"top1", top1_mean}, {"top1_std", top1_std}, {"top5", top5_mean}, {"top5_std", top5_std},
                            {"top1_per_seed", top1}, {"top5_per_seed", top5},
                            {first["type"] == "knn" ? "best_k_per_seed" : "best_lr_per_seed", best_lrs},
                            {"seconds", mean_and_std(seconds).first}};
    if (first.contains("selected_on")) entry["selected_on"] = first["selected_on"];
    if (holdout_top1.size() == per_seed.size()) {
      const auto [mean, std] = mean_and_std(holdout_top1);
      entry["holdout_top1"] = mean;
      entry["holdout_top1_std"] = std;
    }
    if (first["type"] != "knn") {
      entry["lr_at_grid_edge_per_seed"] = edges;
      bool any = false, known = false;
      for (const auto& edge : edges) {
        known = known || edge.is_boolean();
        any = any || (edge.is_boolean() && edge.get<bool>());
      }
      entry["lr_at_grid_edge"] = known ? nlohmann::json(any) : nlohmann::json();  // null: too few rates to bracket
      nlohmann::json epochs = nlohmann::json::array();
      for (const auto& result : per_seed) epochs.push_back(result["heads"][h].value("best_epoch", -1));
      entry["best_epoch_per_seed"] = epochs;
    }
    // Per learning rate (or k): mean and std over seeds of that run's top-1 at its chosen epoch.
    nlohmann::json runs = nlohmann::json::array();
    for (size_t r = 0; r < first["runs"].size(); ++r) {
      std::vector<double> values;
      for (const auto& result : per_seed) values.push_back(result["heads"][h]["runs"][r]["top1"]);
      const auto [mean, std] = mean_and_std(values);
      nlohmann::json run = {{"top1", mean}, {"top1_std", std}};
      if (first["runs"][r].contains("holdout_top1")) {
        std::vector<double> held;
        for (const auto& result : per_seed) held.push_back(result["heads"][h]["runs"][r].value("holdout_top1", 0.0));
        const auto [held_mean, held_std] = mean_and_std(held);
        run["holdout_top1"] = held_mean;
        run["holdout_top1_std"] = held_std;
      }
      if (first["runs"][r].contains("base_lr")) run["base_lr"] = first["runs"][r]["base_lr"];
      if (first["runs"][r].contains("k")) run["k"] = first["runs"][r]["k"];
      runs.push_back(run);
    }
    entry["runs"] = runs;
    heads.push_back(entry);
  }
  out["heads"] = heads;
  nlohmann::json per_seed_files = nlohmann::json::array();
  for (const auto seed : seeds) per_seed_files.push_back("seed-" + std::to_string(seed) + "/results.json");
  out["per_seed"] = per_seed_files;
  return out;
}

std::string results_markdown(const nlohmann::json& results) {
  std::ostringstream out;
  const bool aggregated = results.contains("seeds");
  const auto& config = results["config"];
  const bool holdout = config.value("select_on", "val") == "train-holdout";
  out << "# Probe results\n\n";
  out << "model `" << config.value("model", "") << "` (sha256 " << config.value("model_sha256", "").substr(0, 12)
      << "), data `" << config.value("data", "") << "`, block " << config.value("block", -1) << ", final norm "
      << (config.value("final_norm", true) ? "on" : "off") << ", features " << config.value("features", "") << ", "
      << config.value("epochs", 0) << " epochs, " << config.value("optimizer", "") << ", classifier init "
      << config.value("head_init", "mae") << ", effective batch " << config.value("effective_batch", 0);
  if (aggregated) {
    out << ", seeds";
    for (const auto& seed : results["seeds"]) out << " " << seed.get<uint64_t>();
  } else {
    out << ", seed " << results.value("seed", 0);
  }
  out << "\n\n";
  if (holdout) {
    out << "Each head's learning rate and epoch are chosen on a held-out " << format_number(100 * config.value("holdout_fraction", 0.0), "%g")
        << "% of the training split (" << config.value("holdout_items", 0) << " items, stratified, seed "
        << config.value("holdout_seed", 0) << "), on which the heads do not train; top-1 and top-5 are the validation "
        << "accuracies at that choice.\n\n";
  } else {
    out << "Each head's learning rate and epoch are chosen on the validation split itself (--select-on val): the "
        << "reported accuracy is the maximum over the grid, an optimistic figure.\n\n";
  }
  const std::string held_column = holdout ? " held-out top-1 |" : "";
  const std::string held_rule = holdout ? "---|" : "";
  if (aggregated) {
    out << "| head | chosen lr per seed |" << held_column << " top-1 (mean ± std) | top-5 (mean ± std) | trainable parameters | seconds |\n";
  } else {
    out << "| head | chosen lr | epoch |" << held_column << " top-1 | top-5 | trainable parameters | seconds |\n";
  }
  out << "|---|---|" << (aggregated ? "" : "---|") << held_rule << "---|---|---|---|\n";
  std::vector<std::string> edge_heads;
  for (const auto& head : results["heads"]) {
    const bool knn = head["type"] == "knn";
    std::string best;
    if (aggregated) {
      for (const auto& value : head[knn ? "best_k_per_seed" : "best_lr_per_seed"]) {
        best += (best.empty() ? "" : ", ") + (knn ? "k=" + std::to_string(value.get<int>()) : format_number(value, "%g"));
      }
    } else {
      best = knn ? "k=" + std::to_string(head["best_k"].get<int>()) : format_number(head["best_lr"], "%g");
    }
    const auto edge = head.value("lr_at_grid_edge", nlohmann::json());
    if (edge.is_boolean() && edge.get<bool>()) {
      best += " (at the grid's edge)";
      edge_heads.push_back(head["head"]);
    }
    out << "| " << head["head"].get<std::string>() << " | " << best << " | ";
    if (!aggregated) out << (knn ? std::string("-") : std::to_string(head.value("best_epoch", -1) + 1)) << " | ";
    if (holdout) {
      if (!head.contains("holdout_top1")) out << "- | ";
      else if (aggregated) out << format_number(head["holdout_top1"], "%.2f") << " ± " << format_number(head.value("holdout_top1_std", 0.0), "%.2f") << " | ";
      else out << format_number(head["holdout_top1"], "%.2f") << " | ";
    }
    if (aggregated) {
      out << format_number(head["top1"], "%.2f") << " ± " << format_number(head["top1_std"], "%.2f") << " | "
          << format_number(head["top5"], "%.2f") << " ± " << format_number(head["top5_std"], "%.2f");
    } else {
      out << format_number(head["top1"], "%.2f") << " | " << format_number(head["top5"], "%.2f");
    }
    out << " | " << head["trainable_parameters"].get<int64_t>() << " | "
        << format_number(head.value("seconds", 0.0), "%.1f") << " |\n";
  }
  if (!edge_heads.empty()) {
    out << "\nBest rate at the grid's edge for";
    for (size_t i = 0; i < edge_heads.size(); ++i) out << (i ? ", " : " ") << edge_heads[i];
    out << ": the best rate may lie outside the grid; widen --lrs.\n";
  }
  // The whole grid: every head x learning rate at that rate's own chosen epoch.
  std::vector<double> grid;
  for (const auto& head : results["heads"]) {
    if (head["type"] == "knn") continue;
    for (const auto& run : head["runs"]) {
      const double lr = run["base_lr"];
      if (std::find(grid.begin(), grid.end(), lr) == grid.end()) grid.push_back(lr);
    }
  }
  if (!grid.empty()) {
    std::sort(grid.begin(), grid.end());
    out << "\n## Top-1 per learning rate\n\n" << (holdout ? "held-out / validation" : "validation")
        << " top-1 of each rate at its chosen epoch" << (aggregated ? " (means over seeds)" : "") << ".\n\n| head |";
    for (const double lr : grid) out << " " << format_number(lr, "%g") << " |";
    out << "\n|---|";
    for (size_t i = 0; i < grid.size(); ++i) out << "---|";
    out << "\n";
    for (const auto& head : results["heads"]) {
      if (head["type"] == "knn") continue;
      out << "| " << head["head"].get<std::string>() << " |";
      for (const double lr : grid) {
        std::string cell = " ";
        for (const auto& run : head["runs"]) {
          if (run["base_lr"].get<double>() != lr) continue;
          cell = " " + (run.contains("holdout_top1") ? format_number(run["holdout_top1"], "%.1f") + " / " : std::string()) +
                 format_number(run["top1"], "%.1f");
        }
        out << cell << " |";
      }
      out << "\n";
    }
  }
  if (!aggregated && results.contains("timing")) {
    const auto& timing = results["timing"];
    out << "\nseconds: time in each head's forward, backward and updates, summed over its learning rates. Shared: "
        << format_number(timing.value("extract_seconds", 0.0), "%.1f") << " s feature extraction, "
        << format_number(timing.value("train_seconds", 0.0), "%.1f") << " s training (all heads, encoder included "
        << "when online), " << format_number(timing.value("eval_seconds", 0.0), "%.1f") << " s evaluation.\n";
  }
  return out.str();
}

void write_results(const std::string& dir, const nlohmann::json& results) {
  ensure_directory(dir);
  const std::filesystem::path folder(dir);
  write_file_atomically((folder / "results.json").string(), [&](std::ostream& out) { out << results.dump(2) << "\n"; });
  write_file_atomically((folder / "results.md").string(), [&](std::ostream& out) { out << results_markdown(results); });
}

}  // namespace vitprobe
