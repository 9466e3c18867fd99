#include "jobs/demo_job.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/errors.h"
#include "io/atomic_file.h"
#include "io/output_folder.h"
#include "jobs/attn_stats_job.h"
#include "jobs/demo_figures.h"
#include "jobs/demo_html.h"
#include "jobs/demo_verdicts.h"
#include "jobs/feature_setup.h"  // seconds_since
#include "jobs/probe_job.h"

namespace vitprobe {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kOverlayImages = 8;
constexpr int kOverlayTileSize = 112;  // 4x the 28-px images, so the 7x7 patch grid is visible

struct DemoModel {
  std::string label;
  std::string file;
  bool probe;  // the bundled encoders are probed; the 224-px supervised reference only gets statistics
};

std::string read_text(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string number(double value, const char* format = "%.3f") {
  if (!std::isfinite(value)) return "-";
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

std::string lr_text(const std::vector<double>& lrs) {
  std::string text;
  for (double lr : lrs) text += (text.empty() ? "" : ", ") + number(lr, "%g");
  return "{" + text + "}";
}

// A markdown table cell: '|' would split it.
std::string cell(std::string text) {
  for (auto at = text.find('|'); at != std::string::npos; at = text.find('|', at + 2)) text.replace(at, 1, "\\|");
  return text;
}

// Per-block means of one statistic of one model of stats.json; empty when the model lacks it.
std::vector<double> block_means(const nlohmann::json& model, const std::string& statistic) {
  if (!model.at("statistics").contains(statistic)) return {};
  return model["statistics"][statistic].at("mean").get<std::vector<double>>();
}

const nlohmann::json* find_head(const nlohmann::json& results, const std::string& head) {
  for (const auto& entry : results.at("heads")) {
    if (entry.at("head") == head) return &entry;
  }
  return nullptr;
}

// Validation top-1 of `head` per seed, each at its own chosen rate and epoch; empty when the head was not run.
std::vector<double> seed_top1(const nlohmann::json& results, const std::string& head) {
  const auto* entry = find_head(results, head);
  if (!entry) return {};
  if (entry->contains("top1_per_seed")) return (*entry)["top1_per_seed"].get<std::vector<double>>();
  return {(*entry)["top1"].get<double>()};
}

// How `head`'s rate was chosen: at the grid's edge when any seed's was; Unknown when any seed's flag is null
// (fewer than 3 rates: nothing brackets it) or missing, since only a rate known to be inside the grid is tuned.
RateChoice rate_choice(const nlohmann::json& results, const std::string& head) {
  const auto* entry = find_head(results, head);
  if (!entry) return RateChoice::Unknown;
  const nlohmann::json flags = entry->contains("lr_at_grid_edge_per_seed")
                                   ? (*entry)["lr_at_grid_edge_per_seed"]
                                   : nlohmann::json::array({entry->value("lr_at_grid_edge", nlohmann::json())});
  bool edge = false, unknown = flags.empty();
  for (const auto& flag : flags) {
    if (!flag.is_boolean()) unknown = true;
    else if (flag.get<bool>()) edge = true;
  }
  return edge ? RateChoice::AtGridEdge : unknown ? RateChoice::Unknown : RateChoice::Bracketed;
}

EncoderAttention encoder_attention(const nlohmann::json& model) {
  return {model.at("label"), block_means(model, "cls_cls_attention"), block_means(model, "cls_pos_entropy"),
          model.at("num_patches").get<int>()};
}

// The four verdicts, in paper_claims() order; accuracy claims are inconclusive when a head they need was not run.
std::vector<ClaimVerdict> claim_verdicts(const nlohmann::json& stats, const nlohmann::json& probes, const VerdictRules& rules) {
  std::vector<ClaimVerdict> verdicts;
  const auto& models = stats.at("models");
  verdicts.push_back(cls_self_verdict(encoder_attention(models.at(0)), encoder_attention(models.at(1)), rules));
  verdicts.push_back(cls_entropy_verdict(encoder_attention(models.at(0)), encoder_attention(models.at(1)), rules));
  std::vector<EncoderAccuracy> accuracies;
  std::string missing;
  for (const std::string label : {"MAE", "DINO"}) {
    const auto& results = probes.at(label);
    EncoderAccuracy accuracy{label, seed_top1(results, "cls"), seed_top1(results, "mean"), seed_top1(results, "abmilp"),
                             rate_choice(results, "cls"), rate_choice(results, "mean"), rate_choice(results, "abmilp")};
    accuracy.untrained = looks_untrained(encoder_attention(models.at(label == "MAE" ? 0 : 1)), rules);
    for (const auto& [head, values] : {std::pair<std::string, const std::vector<double>*>{"cls", &accuracy.cls},
                                       {"mean", &accuracy.mean}, {"abmilp", &accuracy.abmilp}}) {
      if (values->empty() && missing.find(head) == std::string::npos) missing += (missing.empty() ? "" : ", ") + head;
    }
    accuracies.push_back(accuracy);
  }
  if (missing.empty()) {
    verdicts.push_back(abmilp_gain_verdict(accuracies[0], accuracies[1], rules));
    verdicts.push_back(tuned_cls_mean_verdict(accuracies, rules));
  } else {
    const ClaimVerdict not_run{Verdict::Inconclusive, "-", "--heads left out " + missing};
    verdicts.push_back(not_run);
    verdicts.push_back(not_run);
  }
  return verdicts;
}

std::string verdict_table(const std::vector<ClaimVerdict>& verdicts) {
  std::ostringstream md;
  md << "| claim | paper's evidence (PAPER.md section) | this run | verdict | reason |\n|---|---|---|---|---|\n";
  const auto& claims = paper_claims();
  for (size_t i = 0; i < claims.size(); ++i) {
    md << "| " << cell(claims[i].claim) << " | " << cell(claims[i].evidence) << " (" << cell(claims[i].section) << ") | "
       << cell(verdicts[i].measured) << " | " << verdict_name(verdicts[i].verdict) << " | " << cell(verdicts[i].reason)
       << " |\n";
  }
  return md.str();
}

// Every block of every model: the statistics the claims rest on.
std::string block_table(const nlohmann::json& stats) {
  std::ostringstream md;
  md << "| model | block | [cls]->[cls] attention | [cls]->patch entropy | ln(patches) | patch self-attention | "
        "patch->patch entropy | patch->[cls] attention |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& model : stats.at("models")) {
    const auto cls_self = block_means(model, "cls_cls_attention"), cls_entropy = block_means(model, "cls_pos_entropy"),
               pos_self = block_means(model, "pos_self_attention"), pos_entropy = block_means(model, "pos_pos_entropy"),
               pos_cls = block_means(model, "pos_cls_attention");
    const int depth = model.at("depth").get<int>();
    const double uniform = std::log(model.at("num_patches").get<double>());
    auto at = [](const std::vector<double>& values, int block) {
      return block < static_cast<int>(values.size()) ? number(values[static_cast<size_t>(block)]) : std::string("-");
    };
    for (int block = 0; block < depth; ++block) {
      md << "| " << model.at("label").get<std::string>() << " | " << block << " | " << at(cls_self, block) << " | "
         << at(cls_entropy, block) << " | " << number(uniform) << " | " << at(pos_self, block) << " | "
         << at(pos_entropy, block) << " | " << at(pos_cls, block) << " |\n";
    }
  }
  return md.str();
}

// "81.10 ± 0.14"; "81.10 (1 seed)" with one seed and "81.10 ± -" when the spread was not recorded, so that a
// printed "± 0.00" is always a measured zero spread.
std::string mean_std_cell(double mean, double std, size_t n_seeds) {
  if (!std::isfinite(mean)) return "-";
  if (n_seeds < 2) return number(mean, "%.2f") + " (1 seed)";
  return number(mean, "%.2f") + " ± " + number(std, "%.2f");
}

std::string accuracy_table(const std::vector<std::pair<std::string, nlohmann::json>>& probes) {
  std::ostringstream md;
  md << "| model | head | chosen base lr (per seed) | val top-1 (mean ± std) | held-out top-1 (mean ± std) |\n"
        "|---|---|---|---|---|\n";
  for (const auto& [label, results] : probes) {
    for (const auto& head : results.at("heads")) {
      const bool knn = head.at("type") == "knn";
      std::string chosen;
      if (head.contains(knn ? "best_k_per_seed" : "best_lr_per_seed")) {
        for (const auto& value : head[knn ? "best_k_per_seed" : "best_lr_per_seed"]) {
          chosen += (chosen.empty() ? "" : ", ") + (knn ? "k=" + value.dump() : number(value.get<double>(), "%g"));
        }
      } else {
        chosen = knn ? "k=" + head.value("best_k", nlohmann::json()).dump() : number(head.value("best_lr", NAN), "%g");
      }
      const auto rate = knn ? RateChoice::Bracketed : rate_choice(results, head.at("head"));
      if (rate == RateChoice::AtGridEdge) chosen += " (grid edge)";
      if (rate == RateChoice::Unknown) chosen += " (not known to be inside the grid)";
      const auto per_seed = seed_top1(results, head.at("head"));
      const auto top1 = mean_and_std(per_seed);
      const size_t n_seeds = results.contains("seeds") ? results["seeds"].size() : 1;
      md << "| " << label << " | " << head.at("head").get<std::string>() << " | " << chosen << " | "
         << mean_std_cell(top1.first, top1.second, per_seed.size()) << " | "
         << mean_std_cell(head.value("holdout_top1", NAN), head.value("holdout_top1_std", NAN), n_seeds) << " |\n";
    }
  }
  return md.str();
}

// "![alt](path)" and the line that names both formats.
std::string figure_markdown(const std::string& alt, const std::string& stem) {
  return "![" + alt + "](" + stem + ".png)\n\nFiles: `" + stem + ".png`, `" + stem + ".svg`.\n\n";
}

}  // namespace

nlohmann::json run_demo(const DemoOptions& requested) {
  DemoOptions options = requested;
  if (options.quick) {
    options.stats_images = 64;
    options.train_images = 500;
    options.val_images = 200;
    options.epochs = 2;
    options.base_lrs = {3, 30};
    options.seeds = 1;
    options.tsne_images = 200;
  }
  if (options.seeds < 1) throw BadInput("--seeds " + std::to_string(options.seeds) + ": must be >= 1");
  if (options.tsne_images < 3) throw BadInput("--tsne-images " + std::to_string(options.tsne_images) + ": must be >= 3");
  const auto start = std::chrono::steady_clock::now();
  std::vector<DemoModel> models = {
      {"MAE", (fs::path(options.models_dir) / "fmnist_mae_vit_d192_p4.safetensors").string(), true},
      {"DINO", (fs::path(options.models_dir) / "fmnist_dino_vit_d192_p4.safetensors").string(), true},
  };
  for (const auto& model : models) {
    if (!fs::exists(model.file)) throw IoError(model.file + ": bundled encoder not found (run from the repository root or pass --models-dir)");
  }
  const auto supervised = fs::path(options.shared_dir) / "models" / "vit_tiny_patch16_224.in1k.safetensors";
  if (fs::exists(supervised)) models.push_back({"supervised ViT-Ti (ImageNet)", supervised.string(), false});
  // Written in place (its feature cache is reused by the next demo); a failed run removes what it added.
  OutputFolder output(options.out_dir, {dataset_folder(options.data)}, OutputFolder::Mode::InPlace);
  const fs::path out(output.path());
  fs::create_directories(out / "figures");

  // 1. Attention statistics of every model on the same validation images.
  std::fprintf(stderr, "demo: attention statistics of %zu encoders on %lld %s val images\n", models.size(),
               static_cast<long long>(options.stats_images), options.data.c_str());
  AttnStatsOptions stats;
  for (const auto& model : models) {
    stats.models.push_back(model.file);
    stats.labels.push_back(model.label);
  }
  stats.data = DatasetSpec{options.data, "val", options.stats_images, 0};
  stats.out_dir = (out / "attn-stats").string();
  const auto stats_summary = run_attn_stats_job(stats);
  nlohmann::json phase_seconds = {{"attention_statistics", seconds_since(start)}};

  // 2. Probes on cached features, every head x the learning-rate grid x seed in one run per encoder.
  std::vector<uint64_t> seeds;
  for (int seed = 0; seed < options.seeds; ++seed) seeds.push_back(static_cast<uint64_t>(seed));
  nlohmann::json probes = nlohmann::json::object();
  std::vector<std::pair<std::string, nlohmann::json>> probe_order;
  for (const auto& model : models) {
    if (!model.probe) continue;
    std::fprintf(stderr, "demo: probing %s (%s) on %lld train / %lld val images, %d epochs, %d seed(s)\n",
                 model.label.c_str(), options.heads.c_str(), static_cast<long long>(options.train_images),
                 static_cast<long long>(options.val_images), options.epochs, options.seeds);
    ProbeJobOptions probe;
    probe.features.model = model.file;
    probe.features.data = options.data;
    probe.features.train_limit = options.train_images;
    probe.features.val_limit = options.val_images;
    probe.features.cache_dir = (out / "feature-cache").string();
    probe.heads = options.heads;
    probe.mode = "cached";
    probe.epochs = options.epochs;
    probe.warmup_epochs = options.quick ? 0 : 2;
    probe.base_lrs = options.base_lrs;
    probe.seeds = seeds;
    probe.out_dir = (out / ("probe-" + model.label)).string();
    probes[model.label] = run_probe_job(probe);
    probe_order.emplace_back(model.label, probes[model.label]);
  }

  phase_seconds["probes"] = seconds_since(start) - phase_seconds["attention_statistics"].get<double>();
  const auto figures_start = std::chrono::steady_clock::now();
  // 3. Figures beyond the statistics (attn-stats wrote attention_stats.png / .svg).
  std::fprintf(stderr, "demo: figures (learning-rate curves, t-SNE of %lld val images, attention overlays)\n",
               static_cast<long long>(options.tsne_images));
  const fs::path figures = out / "figures";
  const Figure lr_figure = learning_rate_figure(probe_order);
  write_png(lr_figure, (figures / "lr_curves.png").string());
  write_svg(lr_figure, (figures / "lr_curves.svg").string());
  Figure tsne_figure;
  tsne_figure.title = "t-SNE of the last block's [cls] token and mean of patch tokens (" +
                      std::to_string(options.tsne_images) + " val images)";
  tsne_figure.columns = 2;
  tsne_figure.panel_width = 420;
  tsne_figure.panel_height = 400;
  tsne_figure.legend_title = "class";
  std::vector<std::string> overlay_stems;
  // Barnes-Hut: on 1,000 points a quarter of the exact method's time (10 s against 41 s on the 2-core machine).
  TsneOptions tsne;
  tsne.method = TsneMethod::BarnesHut;
  for (const auto& model : models) {
    if (!model.probe) continue;
    for (auto& panel : tsne_panels(model.file, model.label, DatasetSpec{options.data, "val", options.tsne_images, 0}, tsne)) {
      tsne_figure.panels.push_back(std::move(panel));
    }
    const auto heads_dir = out / ("probe-" + model.label) / (seeds.size() > 1 ? "seed-0" : "");
    const ImageGrid grid = overlay_grid(model.file, model.label, heads_dir.string(),
                                        DatasetSpec{options.data, "val", kOverlayImages, 0}, kOverlayTileSize);
    const std::string stem = "overlays-" + model.label;
    write_image_grid_png(grid, (figures / (stem + ".png")).string());
    write_image_grid_svg(grid, (figures / (stem + ".svg")).string());
    overlay_stems.push_back(stem);
  }
  write_png(tsne_figure, (figures / "tsne.png").string());
  write_svg(tsne_figure, (figures / "tsne.svg").string());
  phase_seconds["figures"] = seconds_since(figures_start);
  std::fprintf(stderr, "demo: statistics %.0f s, probes %.0f s, figures %.0f s\n",
               phase_seconds["attention_statistics"].get<double>(), phase_seconds["probes"].get<double>(),
               phase_seconds["figures"].get<double>());

  // 4. The report: verdicts first, then the per-block statistics, the accuracies, the figures and the details.
  const VerdictRules rules;
  const auto verdicts = claim_verdicts(stats_summary, probes, rules);
  std::ostringstream md;
  md << "# vitprobe demo\n\n";
  md << "Encoders: bundled MAE and DINO ViTs (dim 192, depth 6, patch 4) pretrained on Fashion-MNIST by `vitprobe "
        "pretrain`" << (models.size() > 2 ? ", and the supervised ImageNet ViT-Ti/16 as a reference" : "") << ". Data: "
     << options.data << "; attention statistics on " << options.stats_images << " val images; probes on "
     << options.train_images << " train / " << options.val_images << " val images, " << options.epochs
     << " epochs, cached features, LARS with base learning rates " << lr_text(options.base_lrs)
     << " (x batch / 256), " << options.seeds << " seed" << (options.seeds == 1 ? "" : "s")
     << ", each head at the rate and epoch chosen on a held-out 10% of its training images"
     << (options.quick ? " (quick run: numbers are a smoke test only)" : "") << ".\n\n";
  md << "## Verdicts\n\n" << verdict_table(verdicts) << "\n";
  md << "### Verdict rules\n\n" << verdict_rules_markdown(rules) << "\n";
  md << "## Attention statistics per block\n\nMeans over the " << options.stats_images
     << " statistics images and the heads (the paper's figures are per block; blocks count from 0).\n\n"
     << block_table(stats_summary) << "\n" << figure_markdown("attention statistics", "attn-stats/attention_stats");
  md << "## Probe accuracy\n\nValidation top-1 of each head at its own chosen rate and epoch, "
     << (options.seeds == 1 ? std::string("one seed (no spread to show)")
                            : "mean ± population std over " + std::to_string(options.seeds) +
                                  " seeds (heads' initialisation and data order)")
     << ".\n\n"
     << accuracy_table(probe_order) << "\n";
  md << "## Figures\n\n### Top-1 against the learning rate\n\nEvery head at every rate of the grid, each rate at its "
        "chosen epoch" << (options.seeds > 1 ? ", means over the seeds" : "")
     << ": [cls] and mean pooling compare fairly only at each one's own best rate.\n\n"
     << figure_markdown("top-1 against the learning rate", "figures/lr_curves");
  md << "### t-SNE of [cls] and mean-pooled features\n\n" << figure_markdown("t-SNE", "figures/tsne");
  md << "### Attention overlays\n\nOn " << kOverlayImages << " val images: the last block's [cls] attention over the "
     << "patches (mean of heads) and the weights of the AbMILP head trained above (seed 0). A tile's H is the "
        "entropy of the map it shows: for [cls], H(mean), of the head-mean map, which is at least the per-block table's "
        "[cls]->patch entropy (a mean of per-head entropies; entropy is concave).\n\n";
  for (const auto& stem : overlay_stems) md << figure_markdown("attention overlays", "figures/" + stem);
  for (const auto& [label, results] : probe_order) {
    md << "## Probes: " << label << "\n\n"
       << demote_headings(read_text((out / ("probe-" + label) / "results.md").string()), 2) << "\n";
  }
  const auto seconds = seconds_since(start);
  md << "\nWall time: " << number(seconds, "%.0f") << " s (attention statistics "
     << number(phase_seconds["attention_statistics"].get<double>(), "%.0f") << " s, probes "
     << number(phase_seconds["probes"].get<double>(), "%.0f") << " s, figures "
     << number(phase_seconds["figures"].get<double>(), "%.0f") << " s).\n";
  const std::string report = md.str();

  const std::string body = markdown_to_html(report, [&](const std::string& path) {
    return image_data_uri(path, read_text((out / path).string()));
  });
  const std::string html = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vitprobe demo</title><style>"
                           "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
                           "td,th{border:1px solid #bbb;padding:3px 8px;vertical-align:top}</style></head><body>\n" +
                           body + "</body></html>\n";
  write_file_atomically((out / "report.md").string(), [&](std::ostream& stream) { stream << report; });
  write_file_atomically((out / "index.html").string(), [&](std::ostream& stream) { stream << html; });

  nlohmann::json claims = nlohmann::json::array();
  for (size_t i = 0; i < verdicts.size(); ++i) {
    claims.push_back({{"id", paper_claims()[i].id}, {"verdict", verdict_name(verdicts[i].verdict)},
                      {"measured", verdicts[i].measured}, {"reason", verdicts[i].reason}});
  }
  nlohmann::json summary = {{"out_dir", options.out_dir}, {"seconds", seconds}, {"phase_seconds", phase_seconds},
                            {"quick", options.quick},
                            {"seeds", seeds}, {"claims", claims}, {"attn_stats", stats.out_dir},
                            {"figures", {"attn-stats/attention_stats", "figures/lr_curves", "figures/tsne"}},
                            {"report", (out / "report.md").string()}, {"index", (out / "index.html").string()}};
  for (const auto& stem : overlay_stems) summary["figures"].push_back("figures/" + stem);
  write_file_atomically((out / "demo.json").string(), [&](std::ostream& stream) { stream << summary.dump(2) << "\n"; });
  output.commit();
  std::fputs(report.c_str(), stdout);
  return summary;
}

}  // namespace vitprobe
