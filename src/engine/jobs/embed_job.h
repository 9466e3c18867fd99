#pragma once
// `vitprobe embed`: a 2-D t-SNE of an encoder's features over a dataset ([cls] token or mean of the patch
// tokens), written as a scatter plot coloured by class (PNG + SVG), the points as CSV, and embed.json.
#include <nlohmann/json_fwd.hpp>

#include <string>

#include "checkpoint/loader.h"
#include "data/dataset.h"
#include "jobs/preprocess_settings.h"
#include "stats/tsne.h"

namespace vitprobe {

/// Options of one embed job; the CLI fills them.
struct EmbedOptions {
  std::string model;
  DatasetSpec data{"", "val"};
  std::string class_names;   // filelist data: names by integer label
  std::string features = "cls";  // cls | mean | abmilp
  std::string heads_dir;     // probe run or head folder with a trained pooling head, for --features abmilp
  bool final_norm = false;   // apply the encoder's final LayerNorm first (the official probe code does not)
  std::string out_dir;
  LoadOptions load;
  PreprocessSettings preprocess;
  int64_t batch_size = 64;
  int num_workers = 2;
  bool save_features = false;  // also write features.npy (N, D)
  bool progress = true;
  TsneOptions tsne;
};

/// Output file names inside the output folder.
constexpr const char* kEmbedJson = "embed.json";
constexpr const char* kEmbedCsv = "embedding.csv";
constexpr const char* kEmbedFigure = "tsne";  // .png and .svg

/// Extracts the features, runs t-SNE, then writes the files and returns the summary (also embed.json).
nlohmann::json run_embed_job(const EmbedOptions& options);

}  // namespace vitprobe
