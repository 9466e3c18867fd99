#include "jobs/demo_figures.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "data/file_list_dataset.h"
#include "image/transforms.h"
#include "jobs/dataset_pass.h"
#include "jobs/maps_job.h"  // patch_attention_maps, heat_map_values, map_entropy
#include "stats/pooling_maps.h"

namespace vitprobe {
namespace {

constexpr double kOverlayAlpha = 0.6;

ScatterSeries class_series(const std::string& name, int64_t label, double radius) {
  ScatterSeries series;
  series.label = name;
  series.color = category_color(label);
  series.radius = radius;
  return series;
}

}  // namespace

Figure learning_rate_figure(const std::vector<std::pair<std::string, nlohmann::json>>& probes) {
  Figure figure;
  figure.title = "Top-1 against the LARS base learning rate (validation solid, held-out dashed)";
  figure.columns = static_cast<int>(std::max<size_t>(1, probes.size()));
  figure.panel_width = 420;
  figure.panel_height = 320;
  figure.legend_title = "head";
  // One colour per head name across all panels (the legend lists each name once), in first-seen order.
  std::vector<std::string> head_names;
  for (const auto& [label, results] : probes) {
    for (const auto& head : results.at("heads")) {
      if (head.at("type") == "knn" || !head.contains("runs")) continue;  // no rate axis: no line
      const std::string name = head.at("head");
      if (std::find(head_names.begin(), head_names.end(), name) == head_names.end()) head_names.push_back(name);
    }
  }
  auto head_color = [&](const std::string& name) {
    return category_color(std::find(head_names.begin(), head_names.end(), name) - head_names.begin());
  };
  for (const auto& [label, results] : probes) {
    Panel panel;
    const bool aggregated = results.contains("seeds");
    panel.title = label + (aggregated ? " (mean of " + std::to_string(results["seeds"].size()) + " seeds)" : "");
    panel.x_label = "base learning rate";
    panel.y_label = "top-1 (%)";
    panel.log_x = true;
    for (const auto& head : results.at("heads")) {
      if (head.at("type") == "knn" || !head.contains("runs")) continue;
      const std::string name = head.at("head");
      LineSeries val, held;
      val.label = name;
      held.label = name + " held-out";
      val.color = held.color = head_color(name);
      held.dashed = true;
      held.width = 1.5;
      std::vector<std::pair<double, const nlohmann::json*>> runs;
      for (const auto& run : head["runs"]) runs.emplace_back(run.at("base_lr").get<double>(), &run);
      std::sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [lr, run] : runs) {
        val.x.push_back(lr);
        val.y.push_back(run->at("top1").get<double>());
        if (run->contains("holdout_top1")) {
          held.x.push_back(lr);
          held.y.push_back(run->at("holdout_top1").get<double>());
        }
      }
      panel.lines.push_back(std::move(val));
      if (!held.x.empty()) panel.lines.push_back(std::move(held));
    }
    if (!panel.lines.empty()) figure.panels.push_back(std::move(panel));
  }
  if (figure.panels.empty()) throw BadInput("learning_rate_figure: no probe results with a trained head");
  figure.columns = std::min(figure.columns, static_cast<int>(figure.panels.size()));
  return figure;
}

std::vector<Panel> tsne_panels(const std::string& model_file, const std::string& label, const DatasetSpec& data,
                               const TsneOptions& tsne) {
  const LoadedModel model = load_model(model_file, LoadOptions{});
  const auto& config = model.encoder->config();
  if (!config.class_token) throw BadInput(model_file + ": the model has no [cls] token for the t-SNE of [cls]");
  const auto dataset = open_analysis_dataset(data);
  if (dataset->size() < 3) throw BadInput(dataset->describe() + ": t-SNE needs at least 3 images");
  ForwardRequest request;
  request.final_tokens = false;
  request.block_outputs = {config.depth - 1};
  std::vector<at::Tensor> cls, mean;
  std::vector<int64_t> labels;
  DatasetPassOptions pass;
  pass.batch_size = 100;
  pass.progress = false;
  run_dataset_pass(model, *dataset, model_preprocess(model, PreprocessSettings{}), request, pass,
                   [&](const Batch& batch, ForwardResult& result) {
                     const auto tokens = result.block_outputs.at(config.depth - 1).to(at::kCPU, at::kFloat);
                     const int64_t first = config.num_prefix_tokens();
                     cls.push_back(tokens.select(1, 0));
                     mean.push_back(tokens.narrow(1, first, tokens.size(1) - first).mean(1));
                     for (int64_t i = 0; i < batch.labels.size(0); ++i) labels.push_back(batch.labels[i].item<int64_t>());
                   });
  std::vector<Panel> panels;
  for (const auto& [name, features] : {std::pair<std::string, at::Tensor>{"[cls] token", at::cat(cls)},
                                       std::pair<std::string, at::Tensor>{"mean of patch tokens", at::cat(mean)}}) {
    const TsneResult result = run_tsne(features, tsne);
    Panel panel;
    char title[160];
    std::snprintf(title, sizeof title, "%s: %s (KL %.2f)", label.c_str(), name.c_str(), result.kl_divergence);
    panel.title = title;
    panel.x_label = "t-SNE 1";
    panel.y_label = "t-SNE 2";
    panel.show_axes_ticks = false;
    std::vector<ScatterSeries> by_class;
    const double radius = labels.size() <= 500 ? 3.5 : 2.5;
    for (int64_t c = 0; c < dataset->num_classes(); ++c) {
      by_class.push_back(class_series(dataset->class_names()[static_cast<size_t>(c)], c, radius));
    }
    const auto points = result.embedding.accessor<double, 2>();
    for (size_t i = 0; i < labels.size(); ++i) {
      auto& series = by_class[static_cast<size_t>(labels[i])];
      series.x.push_back(points[static_cast<int64_t>(i)][0]);
      series.y.push_back(points[static_cast<int64_t>(i)][1]);
    }
    for (auto& series : by_class) {
      if (!series.x.empty()) panel.points.push_back(std::move(series));
    }
    panels.push_back(std::move(panel));
  }
  return panels;
}

ImageGrid overlay_grid(const std::string& model_file, const std::string& label, const std::string& heads_dir,
                       const DatasetSpec& data, int tile_size) {
  const LoadedModel model = load_model(model_file, LoadOptions{});
  const auto& config = model.encoder->config();
  if (!config.class_token) throw BadInput(model_file + ": the model has no [cls] token to draw the attention of");
  std::unique_ptr<PoolingWeightSource> abmilp;
  for (auto& source : load_pooling_heads(heads_dir, model.encoder)) {
    if (source->name() == "abmilp") abmilp = std::move(source);
  }
  if (!abmilp) throw BadInput(heads_dir + ": no trained abmilp head to draw the weights of");
  const auto preprocess = model_preprocess(model, PreprocessSettings{});
  const auto dataset = open_analysis_dataset(data);
  const int block = config.depth - 1, grid = config.grid_size();
  std::vector<ImageU8> crops;
  std::vector<at::Tensor> tensors;
  for (int64_t i = 0; i < dataset->size(); ++i) {
    crops.push_back(center_crop(resize_shorter_side(dataset->load(i), preprocess.resize, preprocess.interpolation),
                                preprocess.crop));
    tensors.push_back(to_normalized_tensor(crops.back(), preprocess.mean, preprocess.std));
  }
  if (tensors.empty()) throw BadInput(dataset->describe() + ": no image for the attention overlays");
  ForwardRequest request;
  request.final_tokens = false;
  request.attention_blocks = {block};
  abmilp->add_inputs_to(request);
  const ForwardResult result = model.encoder->forward(at::stack(tensors), request);
  const auto cls_maps = patch_attention_maps(result.attention.at(block).to(at::kCPU, at::kFloat), true,
                                             config.num_registers).mean(1);  // (B, patches)
  const auto weights = abmilp->patch_weights_of(result).to(at::kCPU, at::kFloat).select(1, 0);  // (B, P)

  ImageGrid out;
  out.title = label + ": [cls] attention (block " + std::to_string(block) + ", head-mean map), AbMILP weights (block " +
              std::to_string(abmilp->input_block()) + ")";
  out.tile_size = tile_size;
  out.columns = 6;
  out.color_bar = ColorMap::Inferno;
  // The [cls] tile's H is that of the head-mean map, not the per-block statistic (a mean of per-head entropies,
  // never above it since entropy is concave): the caption ("H(mean)"), title and colour bar say so.
  out.color_bar_label = "each map scaled to its own range; [cls] H(mean): entropy of the head-mean map (uniform: ln " +
                        std::to_string(grid * grid) + ")";
  for (size_t i = 0; i < crops.size(); ++i) {
    const ImageU8 image = resize_shorter_side(crops[i], tile_size, Interpolation::Bilinear);
    const auto row = static_cast<int64_t>(i);
    char caption[96];
    out.tiles.push_back({dataset->class_names()[static_cast<size_t>(dataset->label(row))], image});
    std::snprintf(caption, sizeof caption, "H(mean)=%.2f", map_entropy(cls_maps[row]));
    out.tiles.push_back({caption, overlay_heat_map(image, heat_map_values(cls_maps[row], grid, image.width), ColorMap::Inferno, kOverlayAlpha)});
    std::snprintf(caption, sizeof caption, "AbMILP H=%.2f", map_entropy(weights[row]));
    out.tiles.push_back({caption, overlay_heat_map(image, heat_map_values(weights[row], grid, image.width), ColorMap::Inferno, kOverlayAlpha)});
  }
  return out;
}

}  // namespace vitprobe
