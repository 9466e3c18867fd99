#pragma once
// The demo's figures beyond the attention statistics: top-1 against the learning rate from probe results,
// t-SNE of [cls] and mean-pooled features, and attention overlays ([cls] attention and trained AbMILP weights)
// on a few validation images.
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "report/image_grid.h"
#include "report/plot.h"
#include "stats/tsne.h"

namespace vitprobe {

/// One panel per encoder (label, probe results.json: one seed or aggregated), log learning-rate axis, one
/// colour per head name, the same in every panel: validation top-1 solid, held-out top-1 dashed, each rate at its chosen epoch (means
/// over seeds when aggregated). Throws BadInput when no results hold a trained head.
Figure learning_rate_figure(const std::vector<std::pair<std::string, nlohmann::json>>& probes);

/// Two t-SNE panels of `model_file` over `data` (val split, limit applied): the [cls] token and the mean of
/// the patch tokens of the last block's output (before the final norm, as the probe's features), points
/// coloured by class, titled with `label`.
std::vector<Panel> tsne_panels(const std::string& model_file, const std::string& label, const DatasetSpec& data,
                               const TsneOptions& tsne);

/// For each image of `data`: the image, its last-block [cls] attention (mean over heads; the caption's H is the
/// entropy of that head-mean map) and the weights of the trained AbMILP head of `heads_dir` (a probe run or
/// seed folder), each upsampled to `tile_size` and overlaid; three tiles per image, two images per row.
ImageGrid overlay_grid(const std::string& model_file, const std::string& label, const std::string& heads_dir,
                       const DatasetSpec& data, int tile_size);

}  // namespace vitprobe
