#pragma once
// `vitprobe forward`: run a checkpoint on images or a .npy batch and write tokens, block outputs, attention
// maps and logits as .npy files.
#include <nlohmann/json_fwd.hpp>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/loader.h"
#include "jobs/preprocess_settings.h"

namespace vitprobe {

/// Options of one forward job; the CLI fills them.
struct ForwardJobOptions {
  std::string model;
  std::vector<std::string> inputs;  // image files, or exactly one .npy (B, 3, H, W) float32
  std::string out_dir;
  std::string blocks;               // "", "all", "last" or "I,J,..." (negative counts from the end)
  bool attention = false;           // write attn{I}.npy for the chosen blocks (all blocks when none chosen)
  int topk = 5;
  std::string class_names;          // file with one class name per line
  LoadOptions load;
  PreprocessSettings preprocess;
};

/// Runs the job, writes the files (only once everything has been computed) and returns the summary that
/// is also written as forward.json.
nlohmann::json run_forward_job(const ForwardJobOptions& options);

/// Parses a --blocks value for a model of `depth` blocks.
std::vector<int> parse_block_list(const std::string& text, int depth);

}  // namespace vitprobe
