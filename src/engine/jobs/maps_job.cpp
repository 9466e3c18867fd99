#include "jobs/maps_job.h"

#include <ATen/ATen.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "image/transforms.h"
#include "io/atomic_file.h"
#include "io/output_folder.h"
#include "io/npy.h"
#include "io/text_file.h"
#include "jobs/dataset_pass.h"
#include "probe/file_hash.h"
#include "report/image_grid.h"
#include "stats/pooling_maps.h"

namespace vitprobe {
namespace {

constexpr int64_t kImagesPerForward = 8;
constexpr int kMaxColumns = 7;

// Output names: the input's stem, numbered when two inputs share one.
std::vector<std::string> output_names(const std::vector<std::string>& inputs) {
  std::map<std::string, int> seen;
  std::vector<std::string> names;
  for (const auto& input : inputs) {
    const std::string stem = std::filesystem::path(input).stem().string();
    const int count = seen[stem]++;
    names.push_back(count == 0 ? stem + ".png" : stem + "-" + std::to_string(count + 1) + ".png");
  }
  return names;
}

std::string percent(double probability) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f%%", 100.0 * probability);
  return text;
}

int balanced_columns(int n_tiles, int requested) {
  if (requested > 0) return requested;
  const int rows = (n_tiles + kMaxColumns - 1) / kMaxColumns;
  return (n_tiles + rows - 1) / rows;
}

}  // namespace

double map_entropy(const at::Tensor& map) {
  const auto p = map.to(at::kDouble) / (map.to(at::kDouble).sum() + 1e-6);
  return -(p * (p + 1e-6).log()).sum().item<double>();
}

std::vector<float> heat_map_values(const at::Tensor& map, int grid, int size) {
  auto upsampled = at::upsample_bilinear2d(map.to(at::kFloat).reshape({1, 1, grid, grid}), {size, size}, false)
                       .reshape({size, size});
  const float low = upsampled.min().item<float>(), high = upsampled.max().item<float>();
  upsampled = high > low ? (upsampled - low) / (high - low) : at::zeros_like(upsampled);
  upsampled = upsampled.contiguous();
  return std::vector<float>(upsampled.data_ptr<float>(), upsampled.data_ptr<float>() + upsampled.numel());
}

at::Tensor patch_attention_maps(const at::Tensor& attention, bool class_token, int num_registers) {
  const int64_t first_patch = (class_token ? 1 : 0) + num_registers;
  const int64_t n_patches = attention.size(3) - first_patch;
  if (class_token) return attention.select(2, 0).narrow(2, first_patch, n_patches);
  return attention.narrow(2, first_patch, n_patches).narrow(3, first_patch, n_patches).mean(2);
}

nlohmann::json run_maps_job(const MapsOptions& options) {
  if (options.out_dir.empty()) throw BadInput("--out is required");
  OutputFolder output(options.out_dir, {});  // checked and locked before any work; written all-or-nothing
  if (options.inputs.empty()) throw BadInput("--input is required (one or more image files)");
  if (!(options.alpha >= 0 && options.alpha <= 1)) throw BadInput("--alpha " + std::to_string(options.alpha) + ": must be in [0, 1]");
  const ColorMap color_map = parse_color_map(options.color_map);
  const LoadedModel model = load_model(options.model, options.load);
  const auto& config = model.encoder->config();
  std::vector<std::unique_ptr<PoolingWeightSource>> pooling;
  std::vector<std::string> skipped_notes;  // dino heads
  if (!options.heads_dir.empty()) pooling = load_pooling_heads(options.heads_dir, model.encoder, &skipped_notes);
  const int block = options.block < 0 ? config.depth + options.block : options.block;
  if (block < 0 || block >= config.depth) {
    throw BadInput("--block " + std::to_string(options.block) + ": the model has " + std::to_string(config.depth) + " blocks");
  }
  const auto preprocess = model_preprocess(model, options.preprocess);
  nlohmann::json notes = skipped_notes;
  if (!pooling.empty()) {
    const auto sha = sha256_file(options.model);
    for (const auto& source : pooling) {
      for (const auto& note : source->mismatches(sha, preprocess)) notes.push_back(note);
    }
  }
  const auto class_names = read_class_names(options.class_names);
  const int grid = config.grid_size(), size = preprocess.crop;
  const std::string what = config.class_token ? "[cls] attention" : "attention received from patches (no [cls])";

  ForwardRequest request;
  request.final_tokens = model.classifier.has_value();
  request.attention_blocks = {block};
  for (const auto& source : pooling) source->add_inputs_to(request);
  std::vector<std::vector<at::Tensor>> pooling_maps(pooling.size());  // per head: (B, maps, grid, grid) per batch
  const auto names = output_names(options.inputs);
  std::vector<ImageGrid> grids;
  std::vector<at::Tensor> all_maps;
  nlohmann::json images = nlohmann::json::array();
  for (size_t start = 0; start < options.inputs.size(); start += kImagesPerForward) {
    const size_t end = std::min(options.inputs.size(), start + kImagesPerForward);
    std::vector<ImageU8> crops;
    std::vector<at::Tensor> tensors;
    for (size_t i = start; i < end; ++i) {
      const ImageU8 resized = resize_shorter_side(decode_image(options.inputs[i]), preprocess.resize, preprocess.interpolation);
      crops.push_back(center_crop(resized, preprocess.crop));
      tensors.push_back(to_normalized_tensor(crops.back(), preprocess.mean, preprocess.std));
    }
    const ForwardResult result = model.encoder->forward(at::stack(tensors), request);
    const auto maps = patch_attention_maps(result.attention.at(block).to(at::kCPU, at::kFloat), config.class_token,
                                           config.num_registers);  // (B, heads, P)
    all_maps.push_back(maps.reshape({maps.size(0), maps.size(1), grid, grid}));
    std::vector<at::Tensor> head_maps;  // per pooling head: (B, maps, patches) of this batch
    for (size_t h = 0; h < pooling.size(); ++h) {
      auto weights = pooling[h]->patch_weights_of(result).to(at::kCPU, at::kFloat);
      pooling_maps[h].push_back(weights.reshape({weights.size(0), weights.size(1), grid, grid}));
      head_maps.push_back(std::move(weights));
    }
    at::Tensor probabilities;
    if (model.classifier) {
      const auto cls = result.tokens.select(1, 0).to(at::kCPU, at::kFloat);
      probabilities = at::softmax(at::linear(cls, model.classifier->weight, model.classifier->bias), -1);
    }

    for (size_t i = start; i < end; ++i) {
      const int64_t row = static_cast<int64_t>(i - start);
      const auto& crop = crops[static_cast<size_t>(row)];
      const auto image_maps = maps[row];
      ImageGrid image_grid;
      image_grid.tile_size = size;
      image_grid.color_bar = color_map;
      image_grid.color_bar_label = what + " of block " + std::to_string(block) + ", each map scaled to its own range";
      image_grid.tiles.push_back({"image (" + std::to_string(size) + "x" + std::to_string(size) + " crop)", crop});
      const auto mean_map = image_maps.mean(0);
      char caption[96];
      std::snprintf(caption, sizeof caption, "mean of %d heads  H=%.2f", config.num_heads, map_entropy(mean_map));
      image_grid.tiles.push_back({caption, overlay_heat_map(crop, heat_map_values(mean_map, grid, size), color_map, options.alpha)});
      nlohmann::json head_entropy = nlohmann::json::array();
      for (int head = 0; head < config.num_heads; ++head) {
        const double h = map_entropy(image_maps[head]);
        head_entropy.push_back(h);
        std::snprintf(caption, sizeof caption, "head %d  H=%.2f", head, h);
        image_grid.tiles.push_back(
            {caption, overlay_heat_map(crop, heat_map_values(image_maps[head], grid, size), color_map, options.alpha)});
      }
      nlohmann::json head_pooling = nlohmann::json::array();
      for (size_t h = 0; h < pooling.size(); ++h) {
        const auto names = pooling[h]->map_names();
        nlohmann::json entropies = nlohmann::json::array();
        for (size_t m = 0; m < names.size(); ++m) {
          const auto map = head_maps[h][row][static_cast<int64_t>(m)];
          const double h_map = map_entropy(map);
          entropies.push_back(h_map);
          std::snprintf(caption, sizeof caption, "%s (probe, block %d)  H=%.2f", names[m].c_str(),
                        pooling[h]->input_block(), h_map);
          image_grid.tiles.push_back({caption, overlay_heat_map(crop, heat_map_values(map, grid, size), color_map, options.alpha)});
        }
        head_pooling.push_back({{"head", pooling[h]->name()}, {"block", pooling[h]->input_block()}, {"entropy", entropies}});
      }
      image_grid.columns = balanced_columns(static_cast<int>(image_grid.tiles.size()), options.columns);
      const std::string input_name = std::filesystem::path(options.inputs[i]).filename().string();
      image_grid.title = input_name + ": block " + std::to_string(block) + " " + what;
      nlohmann::json entry = {{"input", options.inputs[i]}, {"file", names[i]}, {"mean_entropy", map_entropy(mean_map)},
                              {"head_entropy", head_entropy}};
      if (!pooling.empty()) entry["pooling"] = head_pooling;
      if (probabilities.defined()) {
        const int64_t top = probabilities[row].argmax().item<int64_t>();
        const double probability = probabilities[row][top].item<double>();
        const std::string name = top < static_cast<int64_t>(class_names.size()) ? class_names[static_cast<size_t>(top)]
                                                                                 : "class " + std::to_string(top);
        image_grid.title += "; top-1: " + name + " (" + percent(probability) + ")";
        entry["top1"] = {{"index", top}, {"name", name}, {"prob", probability}};
      }
      const auto [width, height] = image_grid_size(image_grid);
      entry["width"] = width;
      entry["height"] = height;
      images.push_back(entry);
      grids.push_back(std::move(image_grid));
    }
  }

  nlohmann::json summary = {{"command", "maps"},
                            {"model", options.model},
                            {"source", model.report.source},
                            {"dtype", options.load.dtype},
                            {"block", block},
                            {"map", what},
                            {"num_heads", config.num_heads},
                            {"grid_size", grid},
                            {"crop", size},
                            {"color_map", options.color_map},
                            {"alpha", options.alpha},
                            {"images", images},
                            {"files", {"maps.json", "cls_attention.npy"}}};
  for (const auto& name : names) summary["files"].push_back(name);
  std::vector<std::string> pooling_files;
  nlohmann::json pooling_heads = nlohmann::json::array();
  for (size_t h = 0; h < pooling.size(); ++h) {
    std::string file = "pooling_" + std::to_string(h) + "_";
    for (char c : pooling[h]->name()) file += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    file += ".npy";
    pooling_files.push_back(file);
    summary["files"].push_back(file);
    pooling_heads.push_back({{"head", pooling[h]->name()}, {"block", pooling[h]->input_block()},
                             {"maps", pooling[h]->map_names()}, {"file", file}});
  }
  if (!pooling.empty()) {
    summary["pooling_heads"] = pooling_heads;
    summary["notes"] = notes;
  }

  const std::filesystem::path out(output.path());
  for (size_t i = 0; i < grids.size(); ++i) write_image_grid_png(grids[i], (out / names[i]).string());
  write_npy((out / "cls_attention.npy").string(), at::cat(all_maps).contiguous());
  for (size_t h = 0; h < pooling.size(); ++h) write_npy((out / pooling_files[h]).string(), at::cat(pooling_maps[h]).contiguous());
  write_file_atomically((out / "maps.json").string(), [&](std::ostream& stream) { stream << summary.dump(1) << "\n"; });
  output.commit();
  return summary;
}

}  // namespace vitprobe
