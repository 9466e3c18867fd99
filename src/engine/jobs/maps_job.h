#pragma once
// `vitprobe maps`: for each image a grid PNG with the image the model saw, and the last block's [cls]
// attention over the patches per head and averaged over heads, upsampled to the image, colour-mapped and
// overlaid. Models without [cls] show the attention each patch receives from the patches instead.
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

#include "checkpoint/loader.h"
#include "jobs/preprocess_settings.h"

namespace vitprobe {

/// Options of one maps job; the CLI fills them.
struct MapsOptions {
  std::string model;
  std::vector<std::string> inputs;  // image files
  std::string heads_dir;            // trained probe heads (probe run or head folder): their pooling weights as extra tiles
  std::string out_dir;
  std::string class_names;          // names of the checkpoint's classifier outputs, for the title
  int block = -1;                   // the block whose attention is drawn; negative counts from the end
  int columns = 0;                  // tiles per row; 0: at most 7, rows balanced
  double alpha = 0.6;               // weight of the heat map over the image
  std::string color_map = "inferno";
  LoadOptions load;
  PreprocessSettings preprocess;
};

/// Writes one grid per image (<stem>.png), cls_attention.npy (B, heads, grid, grid) with the drawn maps
/// before normalisation, pooling_<i>_<head>.npy (B, maps, grid, grid) per pooling head of heads_dir, and
/// maps.json, which is also returned.
nlohmann::json run_maps_job(const MapsOptions& options);

/// Attention maps over the patches (B, heads, patches) of one block's attention (B, heads, T, T): the
/// [cls] row restricted to the patches, or for a model without [cls] the attention each patch receives,
/// averaged over the patch queries. Registers are left out.
at::Tensor patch_attention_maps(const at::Tensor& attention, bool class_token, int num_registers);

/// One map over the patches (grid x grid values) upsampled bilinearly to size x size and scaled to [0, 1] by
/// its own minimum and maximum (all zeros for a constant map), row-major, for overlay_heat_map.
std::vector<float> heat_map_values(const at::Tensor& map, int grid, int size);

/// Entropy (nats) of a map renormalised to sum 1, the selectivity measure of the paper's statistics.
double map_entropy(const at::Tensor& map);

}  // namespace vitprobe
