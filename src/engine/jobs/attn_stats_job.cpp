#include "jobs/attn_stats_job.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <limits>
#include <optional>
#include <sstream>

#include "common/errors.h"
#include "data/file_list_dataset.h"
#include "image/preprocess_json.h"
#include "io/atomic_file.h"
#include "io/output_folder.h"
#include "jobs/dataset_pass.h"
#include "stats/attention_statistics.h"

namespace vitprobe {
namespace {

constexpr double kAttentionBudgetBytes = 1024.0 * 1024.0 * 1024.0;
constexpr int64_t kMaxAutoBatch = 256;

nlohmann::json summary_json(const StatisticInfo& info, const StatisticSummary& summary) {
  nlohmann::json mean = nlohmann::json::array(), std = nlohmann::json::array();
  for (const auto& block : summary.head_mean) {
    mean.push_back(block.mean);
    std.push_back(block.std);
  }
  nlohmann::json out = {{"unit", info.unit}, {"per_head", info.per_head}, {"mean", mean}, {"std", std}};
  if (info.per_head) {
    nlohmann::json head_mean = nlohmann::json::array(), head_std = nlohmann::json::array();
    for (const auto& block : summary.per_head) {
      nlohmann::json means = nlohmann::json::array(), stds = nlohmann::json::array();
      for (const auto& head : block) {
        means.push_back(head.mean);
        stds.push_back(head.std);
      }
      head_mean.push_back(means);
      head_std.push_back(stds);
    }
    out["head_mean"] = head_mean;
    out["head_std"] = head_std;
  }
  return out;
}

// Statistics of one model over the dataset, as its stats.json entry.
nlohmann::json model_statistics(const std::string& file, const std::string& label, const Dataset& dataset,
                                const AttnStatsOptions& options, Communicator& communicator) {
  const auto started = std::chrono::steady_clock::now();
  const LoadedModel model = load_model(file, options.load);
  const auto& config = model.encoder->config();
  const auto preprocess = model_preprocess(model, options.preprocess);
  const StatisticsLayout layout{config.class_token, config.num_registers, config.num_patches(), config.layer_scale};
  StatisticsAccumulator accumulator(layout, config.depth, config.num_heads);

  ForwardRequest request;
  request.final_tokens = false;
  request.magnitudes = true;
  for (int block = 0; block < config.depth; ++block) request.attention_blocks.push_back(block);
  DatasetPassOptions pass;
  pass.batch_size = attention_batch_size(config, options.batch_size);
  pass.num_workers = options.num_workers;
  pass.progress = options.progress;
  pass.progress_label = "attn-stats " + label;
  pass.rank = communicator.rank();
  pass.world_size = communicator.world_size();
  const auto pass_started = std::chrono::steady_clock::now();
  run_dataset_pass(model, dataset, preprocess, request, pass, [&](const Batch&, ForwardResult& result) {
    for (int block = 0; block < config.depth; ++block) {
      accumulator.add(block, compute_block_statistics(result.attention.at(block), result.attention_branch_norms[block],
                                                      result.residual_norms[block], layout,
                                                      result.attention_branch_norms_after_layer_scale[block]));
      result.attention.erase(block);  // frees the block's (B, heads, T, T) early
    }
  });
  const auto finished = std::chrono::steady_clock::now();  // the pass alone: decoding, forwards, statistics
  accumulator.all_reduce(communicator);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double pass_seconds = std::chrono::duration<double>(finished - pass_started).count();

  nlohmann::json statistics = nlohmann::json::object();
  const auto summaries = accumulator.summarize();
  for (const auto& info : accumulator.statistics()) statistics[info.name] = summary_json(info, summaries.at(info.name));
  return {{"label", label},
          {"model", file},
          {"source", model.report.source},
          {"dtype", options.load.dtype},
          {"depth", config.depth},
          {"num_heads", config.num_heads},
          {"embed_dim", config.embed_dim},
          {"class_token", config.class_token},
          {"num_registers", config.num_registers},
          {"num_patches", config.num_patches()},
          {"img_size", config.img_size},
          {"num_images", accumulator.num_images()},
          {"batch_size", pass.batch_size},
          {"preprocess", preprocess_json(preprocess)},
          {"seconds", seconds},
          {"pass_seconds", pass_seconds},
          {"images_per_second", pass_seconds > 0 ? accumulator.num_images() / pass_seconds : 0.0},
          {"statistics", statistics}};
}

std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.12g", value);
  return text;
}

// A CSV field: quoted when it holds a comma, quote or line break.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

}  // namespace

int64_t attention_batch_size(const VitConfig& config, int64_t requested) {
  if (requested > 0) return requested;
  const double tokens = config.num_tokens();
  const double per_image = static_cast<double>(config.depth) * config.num_heads * tokens * tokens * sizeof(float);
  return std::clamp<int64_t>(static_cast<int64_t>(kAttentionBudgetBytes / per_image), 1, kMaxAutoBatch);
}

Figure attention_stats_figure(const nlohmann::json& summary, bool std_bands) {
  Figure figure;
  const auto& models = summary.at("models");
  const int64_t n_images = models.empty() ? 0 : models.front().at("num_images").get<int64_t>();
  figure.title = "Attention statistics per block: mean over " + std::to_string(n_images) + " images" +
                 " and heads" + (std_bands ? " (bands: +-1 std over images)" : "");
  figure.legend_title = "model";
  for (const auto& info : all_statistics()) {
    Panel panel;
    panel.title = info.name;
    panel.x_label = "block";
    panel.y_label = info.unit;
    panel.integer_x_ticks = true;
    for (size_t index = 0; index < models.size(); ++index) {
      const auto& statistics = models[index].at("statistics");
      if (!statistics.contains(info.name)) continue;
      const auto& statistic = statistics.at(info.name);
      LineSeries line;
      line.label = models[index].at("label").get<std::string>();
      line.color = category_color(static_cast<int64_t>(index));
      const auto mean = statistic.at("mean").get<std::vector<double>>();
      const auto std = statistic.at("std").get<std::vector<double>>();
      for (size_t block = 0; block < mean.size(); ++block) {
        line.x.push_back(static_cast<double>(block));
        line.y.push_back(mean[block]);
        if (std_bands) {
          line.band_low.push_back(mean[block] - std[block]);
          line.band_high.push_back(mean[block] + std[block]);
        }
      }
      panel.lines.push_back(std::move(line));
    }
    // A statistic spanning more than three decades (the adj_for_cls ratios when [cls] attends only to
    // itself) would flatten every other block on a linear axis.
    double low = std::numeric_limits<double>::infinity(), high = 0;
    for (const auto& line : panel.lines) {
      for (double value : line.y) low = std::min(low, value), high = std::max(high, value);
    }
    panel.log_y = low > 0 && high / low > 1e3;
    if (panel.log_y) panel.y_label += " (log)";
    if (!panel.lines.empty()) figure.panels.push_back(std::move(panel));
  }
  const int n_panels = static_cast<int>(figure.panels.size());
  figure.columns = n_panels <= 4 ? std::max(1, n_panels) : 5;
  return figure;
}

std::string attention_stats_csv(const nlohmann::json& summary) {
  std::ostringstream csv;
  csv << "model,block,head,statistic,mean,std\n";
  for (const auto& model : summary.at("models")) {
    const std::string label = csv_field(model.at("label").get<std::string>());
    for (const auto& [name, statistic] : model.at("statistics").items()) {
      const auto mean = statistic.at("mean").get<std::vector<double>>();
      const auto std = statistic.at("std").get<std::vector<double>>();
      for (size_t block = 0; block < mean.size(); ++block) {
        csv << label << ',' << block << ",all," << name << ',' << number_text(mean[block]) << ','
            << number_text(std[block]) << '\n';
        if (!statistic.at("per_head").get<bool>()) continue;
        const auto& head_mean = statistic.at("head_mean")[block];
        const auto& head_std = statistic.at("head_std")[block];
        for (size_t head = 0; head < head_mean.size(); ++head) {
          csv << label << ',' << block << ',' << head << ',' << name << ',' << number_text(head_mean[head].get<double>())
              << ',' << number_text(head_std[head].get<double>()) << '\n';
        }
      }
    }
  }
  return csv.str();
}

nlohmann::json run_attn_stats_job(const AttnStatsOptions& given) {
  AttnStatsOptions options = given;  // each rank of a distributed run on its own GPU (LOCAL_RANK)
  const DistOptions dist = rank_dist_options(options.dist, options.load.device);
  if (options.out_dir.empty()) throw BadInput("--out is required");
  if (options.models.empty()) throw BadInput("--model is required (one or more checkpoints)");
  if (options.batch_size < 0) throw BadInput("--batch-size " + std::to_string(options.batch_size) + ": must be >= 0");
  const auto labels = model_labels(options.models, options.labels);
  const auto communicator = connect(dist);
  // --out is checked and locked before any work, by the rank that writes it, and written all-or-nothing.
  const std::vector<std::string> inputs = {dataset_folder(options.data.text)};
  check_output_location(options.out_dir, inputs);
  std::optional<OutputFolder> output;
  if (communicator->is_main()) output.emplace(options.out_dir, inputs);
  const auto dataset = open_analysis_dataset(options.data, options.class_names);

  nlohmann::json summary;
  summary["command"] = "attn-stats";
  summary["version"] = VITPROBE_VERSION;
  summary["config"] = {{"data", options.data.text},
                       {"split", options.data.split},
                       {"limit", options.data.limit},
                       {"seed", options.data.seed},
                       {"dataset", dataset->describe()},
                       {"num_images", dataset->size()},
                       {"batch_size", options.batch_size > 0 ? nlohmann::json(options.batch_size) : nlohmann::json("auto")},
                       {"dtype", options.load.dtype},
                       {"device", options.load.device},
                       {"std", "population (ddof 0) over images"},
                       {"formulas", "gmum/beyond_cls main_attention_stats.py; magnitudes: the attention branch "
                                    "before LayerScale over the residual (models_simmim.py), with LayerScale "
                                    "also *_magnitude_after_layer_scale; registers excluded from [cls]/patch "
                                    "statistics and reported as cls_reg_attention, pos_reg_attention, "
                                    "reg_self_attention, reg_magnitude"}};
  nlohmann::json names = nlohmann::json::array();
  for (const auto& info : all_statistics()) names.push_back(info.name);
  summary["statistic_names"] = names;
  summary["models"] = nlohmann::json::array();
  for (size_t index = 0; index < options.models.size(); ++index) {
    summary["models"].push_back(model_statistics(options.models[index], labels[index], *dataset, options, *communicator));
  }

  // Everything is computed before the first file is written: a failure above leaves no output behind.
  const Figure figure = attention_stats_figure(summary, options.std_bands);
  const FigureSize size = figure_size(figure);
  const std::string png = std::string(kStatsFigure) + ".png", svg = std::string(kStatsFigure) + ".svg";
  summary["figures"] = {{"png", {{"file", png}, {"width", size.width}, {"height", size.height}}},
                        {"svg", {{"file", svg}, {"width", size.width}, {"height", size.height}}},
                        {"panels", figure.panels.size()}};
  summary["files"] = {kStatsJson, kStatsCsv, png, svg};
  const std::string csv = attention_stats_csv(summary);
  if (communicator->distributed()) summary["world_size"] = communicator->world_size();
  if (!communicator->is_main()) return summary;  // rank 0 writes

  const std::filesystem::path out(output->path());
  write_png(figure, (out / png).string());
  write_svg(figure, (out / svg).string());
  write_file_atomically((out / kStatsCsv).string(), [&](std::ostream& stream) { stream << csv; });
  write_file_atomically((out / kStatsJson).string(), [&](std::ostream& stream) { stream << summary.dump(1) << "\n"; });
  output->commit();
  return summary;
}

}  // namespace vitprobe
