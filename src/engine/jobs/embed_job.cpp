#include "jobs/embed_job.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/errors.h"
#include "common/progress.h"
#include "data/file_list_dataset.h"
#include "io/atomic_file.h"
#include "io/output_folder.h"
#include "io/npy.h"
#include "jobs/dataset_pass.h"
#include "probe/file_hash.h"
#include "report/plot.h"
#include "stats/pooling_maps.h"

namespace vitprobe {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Checks the feature choice against the model before any image is loaded; for abmilp returns the trained
// abmilp head of --heads-dir.
std::unique_ptr<PoolingWeightSource> check_features(const EmbedOptions& options, const LoadedModel& model) {
  const auto& config = model.encoder->config();
  if (options.features == "abmilp") {
    if (options.heads_dir.empty()) {
      throw BadInput("--features abmilp needs --heads-dir: a probe run (or head folder) with a trained pooling head");
    }
    auto sources = load_pooling_heads(options.heads_dir, model.encoder);
    std::string found;
    for (auto& source : sources) {
      if (source->name().rfind("abmilp", 0) == 0) return std::move(source);
      found += (found.empty() ? "" : ", ") + source->name();
    }
    throw BadInput(options.heads_dir + ": no abmilp head for --features abmilp (pooling heads found: " + found + ")");
  }
  if (options.features == "cls") {
    if (!config.class_token) throw BadInput(options.model + ": the model has no [cls] token; use --features mean");
  } else if (options.features != "mean") {
    throw BadInput("--features '" + options.features + "': expected cls, mean or abmilp");
  }
  return nullptr;
}

// The features of one batch from the chosen token representation (B, T, D).
at::Tensor batch_features(const std::string& features, const at::Tensor& tokens, const VitConfig& config) {
  if (features == "cls") return tokens.select(1, 0);
  const int64_t first_patch = config.num_prefix_tokens();
  return tokens.narrow(1, first_patch, tokens.size(1) - first_patch).mean(1);
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

Figure scatter_figure(const at::Tensor& embedding, const std::vector<int64_t>& labels, const Dataset& dataset,
                      const std::string& title, const TsneResult& result) {
  Panel panel;
  char subtitle[96];
  std::snprintf(subtitle, sizeof subtitle, "%s t-SNE, perplexity %.3g, KL %.3f", result.method.c_str(), result.perplexity,
                result.kl_divergence);
  panel.title = subtitle;
  panel.x_label = "t-SNE 1";
  panel.y_label = "t-SNE 2";
  panel.show_axes_ticks = false;
  const int64_t n = embedding.size(0);
  const double radius = n <= 200 ? 5.0 : n <= 2000 ? 3.5 : 2.0;
  std::vector<ScatterSeries> by_class(static_cast<size_t>(dataset.num_classes()));
  const auto points = embedding.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i) {
    auto& series = by_class[static_cast<size_t>(labels[static_cast<size_t>(i)])];
    series.x.push_back(points[i][0]);
    series.y.push_back(points[i][1]);
  }
  for (size_t label = 0; label < by_class.size(); ++label) {
    if (by_class[label].x.empty()) continue;
    by_class[label].label = dataset.class_names()[label];
    by_class[label].color = category_color(static_cast<int64_t>(label));
    by_class[label].radius = radius;
    panel.points.push_back(std::move(by_class[label]));
  }
  Figure figure;
  figure.title = title;
  figure.panels.push_back(std::move(panel));
  figure.panel_width = 640;
  figure.panel_height = 580;
  figure.legend_title = "class";
  return figure;
}

}  // namespace

nlohmann::json run_embed_job(const EmbedOptions& options) {
  if (options.out_dir.empty()) throw BadInput("--out is required");
  // Checked and locked before any work; written all-or-nothing.
  OutputFolder output(options.out_dir, {dataset_folder(options.data.text)});
  if (options.batch_size < 1) throw BadInput("--batch-size " + std::to_string(options.batch_size) + ": must be >= 1");
  const auto started = std::chrono::steady_clock::now();
  const LoadedModel model = load_model(options.model, options.load);
  const auto& config = model.encoder->config();
  const auto pooling = check_features(options, model);
  const auto preprocess = model_preprocess(model, options.preprocess);
  const auto notes = pooling ? pooling->mismatches(sha256_file(options.model), preprocess) : std::vector<std::string>{};
  const auto dataset = open_analysis_dataset(options.data, options.class_names);
  if (dataset->size() < 3) throw BadInput(dataset->describe() + ": t-SNE needs at least 3 images");

  ForwardRequest request;
  request.final_tokens = options.final_norm && !pooling;
  if (pooling) {
    pooling->add_inputs_to(request);  // the head's own block and final-norm setting (--final-norm does not apply)
  } else if (!options.final_norm) {
    request.block_outputs = {config.depth - 1};
  }
  std::vector<at::Tensor> features;
  std::vector<int64_t> labels, indices;
  DatasetPassOptions pass;
  pass.batch_size = options.batch_size;
  pass.num_workers = options.num_workers;
  pass.progress = options.progress;
  pass.progress_label = "embed features";
  run_dataset_pass(model, *dataset, preprocess, request, pass, [&](const Batch& batch, ForwardResult& result) {
    if (pooling) {
      features.push_back(pooling->pooled_of(result).to(at::kCPU, at::kFloat));
    } else {
      const auto& tokens = options.final_norm ? result.tokens : result.block_outputs.at(config.depth - 1);
      features.push_back(batch_features(options.features, tokens, config).to(at::kCPU, at::kFloat));
    }
    for (int64_t i = 0; i < batch.labels.size(0); ++i) {
      labels.push_back(batch.labels[i].item<int64_t>());
      indices.push_back(batch.indices[i].item<int64_t>());
    }
  });
  const double feature_seconds = seconds_since(started);
  const auto feature_matrix = at::cat(features);

  const auto tsne_started = std::chrono::steady_clock::now();
  TsneOptions tsne = options.tsne;
  ProgressOptions progress_options;
  progress_options.enabled = options.progress;
  progress_options.unit = "iter";
  Progress progress("t-SNE", tsne.iterations, progress_options);
  tsne.on_iteration = [&](int) { progress.advance(); };
  const TsneResult result = run_tsne(feature_matrix, tsne);
  progress.finish();
  const double tsne_seconds = seconds_since(tsne_started);

  std::ostringstream title;
  title << "t-SNE of " << options.features << " features"
        << ((pooling ? pooling->final_norm() : options.final_norm) ? " (final norm)" : "") << ": "
        << std::filesystem::path(options.model).filename().string() << ", " << feature_matrix.size(0) << " images";
  const Figure figure = scatter_figure(result.embedding, labels, *dataset, title.str(), result);
  const FigureSize size = figure_size(figure);

  std::ostringstream csv;
  csv << "index,x,y,label,class,item\n";
  const auto points = result.embedding.accessor<double, 2>();
  for (size_t i = 0; i < labels.size(); ++i) {
    char coordinates[64];
    std::snprintf(coordinates, sizeof coordinates, "%.9g,%.9g", points[static_cast<int64_t>(i)][0], points[static_cast<int64_t>(i)][1]);
    csv << indices[i] << ',' << coordinates << ',' << labels[i] << ','
        << csv_field(dataset->class_names()[static_cast<size_t>(labels[i])]) << ','
        << csv_field(dataset->item_name(indices[i])) << '\n';
  }

  const std::string png = std::string(kEmbedFigure) + ".png", svg = std::string(kEmbedFigure) + ".svg";
  nlohmann::json files = {kEmbedJson, kEmbedCsv, png, svg};
  if (options.save_features) files.push_back("features.npy");
  nlohmann::json summary = {
      {"command", "embed"},
      {"model", options.model},
      {"source", model.report.source},
      {"dtype", options.load.dtype},
      {"features", options.features},
      {"final_norm", pooling ? pooling->final_norm() : options.final_norm},
      {"notes", notes},
      {"pooling_head", pooling ? nlohmann::json({{"head", pooling->name()}, {"block", pooling->input_block()}, {"heads_dir", options.heads_dir}})
                               : nlohmann::json()},
      {"feature_dims", feature_matrix.size(1)},
      {"data", options.data.text},
      {"dataset", dataset->describe()},
      {"num_points", feature_matrix.size(0)},
      {"num_classes_present", static_cast<int64_t>(figure.panels.front().points.size())},
      {"tsne",
       {{"method", result.method},
        {"perplexity", result.perplexity},
        {"iterations", tsne.iterations},
        {"learning_rate", result.learning_rate},
        {"early_exaggeration", tsne.early_exaggeration},
        {"theta", tsne.theta},
        {"input_dims", result.input_dims},
        {"kl_divergence", result.kl_divergence}}},
      {"seconds", {{"features", feature_seconds}, {"tsne", tsne_seconds}}},
      {"figures", {{"png", {{"file", png}, {"width", size.width}, {"height", size.height}}},
                   {"svg", {{"file", svg}, {"width", size.width}, {"height", size.height}}}}},
      {"files", files}};

  const std::filesystem::path out(output.path());
  write_png(figure, (out / png).string());
  write_svg(figure, (out / svg).string());
  if (options.save_features) write_npy((out / "features.npy").string(), feature_matrix);
  write_file_atomically((out / kEmbedCsv).string(), [&](std::ostream& stream) { stream << csv.str(); });
  write_file_atomically((out / kEmbedJson).string(), [&](std::ostream& stream) { stream << summary.dump(1) << "\n"; });
  output.commit();
  return summary;
}

}  // namespace vitprobe
