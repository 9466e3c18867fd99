#pragma once
// `vitprobe attn-stats`: the paper's information-flow statistics (stats/attention_statistics.h) of one or
// more encoders over a dataset, written as stats.json, a tidy stats.csv and a figure (PNG + SVG) with one
// panel per statistic against the block and one line per model.
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

#include "checkpoint/loader.h"
#include "data/dataset.h"
#include "distributed/process_group.h"
#include "jobs/preprocess_settings.h"
#include "report/plot.h"

namespace vitprobe {

/// Options of one attn-stats job; the CLI fills them.
struct AttnStatsOptions {
  std::vector<std::string> models;  // checkpoints, compared in one figure
  std::vector<std::string> labels;  // one per model, or empty: the file stems
  DatasetSpec data{"", "val"};
  std::string class_names;          // filelist data: names by integer label
  std::string out_dir;
  LoadOptions load;                 // shared by every model
  PreprocessSettings preprocess;    // unset fields come from each checkpoint's metadata
  int64_t batch_size = 0;           // 0: as many images as keep every block's attention under 1 GiB (<= 256)
  int num_workers = 2;
  bool std_bands = false;           // shade mean +- std over images in the figure
  bool progress = true;
  DistOptions dist;                 // several ranks: each runs a shard, statistics are merged, rank 0 writes
};

/// Output file names inside the output folder.
constexpr const char* kStatsJson = "stats.json";
constexpr const char* kStatsCsv = "stats.csv";
constexpr const char* kStatsFigure = "attention_stats";  // .png and .svg

/// The batch size of a model: `requested` when positive, else the largest (1..256) whose attention maps of
/// all blocks (batch x depth x heads x T^2 float32 values) fit in 1 GiB.
int64_t attention_batch_size(const VitConfig& config, int64_t requested);

/// Runs every model over the dataset, then writes the files (only once everything is computed) and returns
/// the summary that is also stats.json.
nlohmann::json run_attn_stats_job(const AttnStatsOptions& options);

/// The figure of a stats.json summary: one panel per statistic that some model has, one line per model.
Figure attention_stats_figure(const nlohmann::json& summary, bool std_bands);

/// The tidy CSV text of a stats.json summary: model,block,head,statistic,mean,std with head "all" for the
/// head average (the only row of the magnitudes) and 0.. for single heads.
std::string attention_stats_csv(const nlohmann::json& summary);

}  // namespace vitprobe
