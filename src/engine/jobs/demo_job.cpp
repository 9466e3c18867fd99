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
#include "jobs/probe_job.h"

namespace vitprobe {
namespace {

namespace fs = std::filesystem;

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

std::string base64(const std::string& bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += alphabet[(v >> shift) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= uint8_t(bytes[i + 1]) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      default: out += c;
    }
  }
  return out;
}

// A markdown table (| a | b |) as an HTML table; other lines as paragraphs.
std::string markdown_to_html(const std::string& markdown) {
  std::istringstream in(markdown);
  std::string html, line;
  bool in_table = false;
  while (std::getline(in, line)) {
    const bool row = line.size() > 1 && line.front() == '|';
    if (row && line.find("---") != std::string::npos) continue;
    if (row) {
      if (!in_table) html += "<table>\n";
      const bool header = !in_table;
      in_table = true;
      html += "<tr>";
      std::istringstream cells(line.substr(1));
      for (std::string cell; std::getline(cells, cell, '|');) {
        html += header ? "<th>" : "<td>";
        html += html_escape(cell);
        html += header ? "</th>" : "</td>";
      }
      html += "</tr>\n";
      continue;
    }
    if (in_table) html += "</table>\n";
    in_table = false;
    if (line.rfind("# ", 0) == 0) {
      html += "<h2>" + html_escape(line.substr(2)) + "</h2>\n";
    } else if (line.rfind("## ", 0) == 0) {
      html += "<h3>" + html_escape(line.substr(3)) + "</h3>\n";
    } else if (!line.empty()) {
      html += "<p>" + html_escape(line) + "</p>\n";
    }
  }
  if (in_table) html += "</table>\n";
  return html;
}

// Block-averaged value of a statistic for one model of stats.json; NaN when the model lacks it.
double block_average(const nlohmann::json& model, const std::string& statistic) {
  if (!model.at("statistics").contains(statistic)) return std::nan("");
  const auto values = model["statistics"][statistic].at("mean").get<std::vector<double>>();
  double sum = 0;
  for (double value : values) sum += value;
  return values.empty() ? std::nan("") : sum / values.size();
}

double head_top1(const nlohmann::json& results, const std::string& head) {
  for (const auto& entry : results.at("heads")) {
    if (entry.at("head") == head) return entry.at("top1").get<double>();
  }
  return std::nan("");
}

std::string number(double value, const char* format = "%.3f") {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

std::string lr_text(const std::vector<double>& lrs) {
  std::string text;
  for (double lr : lrs) text += (text.empty() ? "" : ", ") + number(lr, "%g");
  return "{" + text + "}";
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
  }
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

  // 2. Probes on cached features, every head x the learning-rate grid in one run per encoder.
  nlohmann::json probes = nlohmann::json::object();
  for (const auto& model : models) {
    if (!model.probe) continue;
    std::fprintf(stderr, "demo: probing %s (%s) on %lld train / %lld val images, %d epochs\n", model.label.c_str(),
                 options.heads.c_str(), static_cast<long long>(options.train_images),
                 static_cast<long long>(options.val_images), options.epochs);
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
    probe.out_dir = (out / ("probe-" + model.label)).string();
    probes[model.label] = run_probe_job(probe);
  }

  // 3. The report: findings first, then the figure and the tables.
  std::ostringstream md;
  md << "# vitprobe demo\n\n";
  md << "Encoders: bundled MAE and DINO ViTs (dim 192, depth 6, patch 4) pretrained on Fashion-MNIST by `vitprobe "
        "pretrain`" << (models.size() > 2 ? ", and the supervised ImageNet ViT-Ti/16 as a reference" : "") << ". Data: "
     << options.data << "; attention statistics on " << options.stats_images << " val images; probes on "
     << options.train_images << " train / " << options.val_images << " val images, " << options.epochs
     << " epochs, cached features, LARS with base learning rates " << lr_text(options.base_lrs)
     << " (x batch / 256), each head at the rate and epoch chosen on a held-out 10% of its training images" << (options.quick ? " (quick run: numbers are a smoke test only)" : "") << ".\n\n";
  md << "## Findings\n\n";
  md << "| model | [cls]->[cls] attention | [cls]->patch entropy | patch self-attention | cls top-1 | abmilp top-1 | "
        "abmilp - cls |\n|---|---|---|---|---|---|---|\n";
  for (const auto& model_stats : stats_summary.at("models")) {
    const std::string label = model_stats.at("label");
    md << "| " << label << " | " << number(block_average(model_stats, "cls_cls_attention")) << " | "
       << number(block_average(model_stats, "cls_pos_entropy")) << " | "
       << number(block_average(model_stats, "pos_self_attention")) << " | ";
    if (probes.contains(label)) {
      const double cls = head_top1(probes[label], "cls"), abmilp = head_top1(probes[label], "abmilp");
      md << number(cls, "%.2f") << " | " << number(abmilp, "%.2f") << " | " << number(abmilp - cls, "%+.2f") << " |\n";
    } else {
      md << "- | - | - |\n";
    }
  }
  md << "\nAttention values are averaged over blocks, heads and images (per-block curves in the figure). The paper's "
        "claims at this scale: MAE's [cls] attends more to itself and more uniformly (higher entropy) over patches "
        "than DINO's, and AbMILP gains more over the [cls] probe on MAE than on DINO.\n\n";
  md << "## Attention statistics\n\n![attention statistics](attn-stats/attention_stats.png)\n\n";
  for (const auto& [label, results] : probes.items()) {
    md << "## Probes: " << label << "\n\n" << read_text((out / ("probe-" + label) / "results.md").string()) << "\n";
  }
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  md << "\nWall time: " << number(seconds, "%.0f") << " s.\n";
  const std::string report = md.str();

  const std::string figure = base64(read_text((out / "attn-stats" / "attention_stats.png").string()));
  std::string body = markdown_to_html(report);
  const std::string image_tag = "<p>![attention statistics](attn-stats/attention_stats.png)</p>";
  const auto at = body.find(image_tag);
  if (at != std::string::npos) {
    body.replace(at, image_tag.size(),
                 "<p><img alt=\"attention statistics\" style=\"max-width:100%\" src=\"data:image/png;base64," + figure + "\"></p>");
  }
  const std::string html = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vitprobe demo</title><style>"
                           "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
                           "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}</style></head><body>\n" +
                           body + "</body></html>\n";
  write_file_atomically((out / "report.md").string(), [&](std::ostream& stream) { stream << report; });
  write_file_atomically((out / "index.html").string(), [&](std::ostream& stream) { stream << html; });

  nlohmann::json summary = {{"out_dir", options.out_dir}, {"seconds", seconds}, {"quick", options.quick},
                            {"attn_stats", stats.out_dir}, {"report", (out / "report.md").string()},
                            {"index", (out / "index.html").string()}};
  write_file_atomically((out / "demo.json").string(), [&](std::ostream& stream) { stream << summary.dump(2) << "\n"; });
  output.commit();
  std::fputs(report.c_str(), stdout);
  return summary;
}

}  // namespace vitprobe
