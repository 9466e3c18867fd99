#pragma once
// What a checkpoint file holds before any interpretation: its leaves in file order, tensors and the
// non-tensor values that are reported and skipped (argparse.Namespace, epoch numbers, optimizer state).
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace vitprobe {

/// One leaf of a checkpoint's container tree.
struct CheckpointEntry {
  /// Container keys from the top, e.g. {"model", "blocks.0.attn.qkv.weight"}; list items use their index.
  std::vector<std::string> path;
  /// Defined for tensor leaves (CPU, contiguous, dtype as stored).
  at::Tensor tensor;
  /// For non-tensor leaves: a short type name such as "int", "str", "argparse.Namespace", "list".
  std::string kind;
};

/// A checkpoint file as read, before key remapping.
struct RawCheckpoint {
  std::string file;
  std::string format;  // "safetensors" or "torch-zip"
  std::vector<CheckpointEntry> entries;
  std::map<std::string, std::string> metadata;  // safetensors __metadata__ (empty for torch-zip)
};

/// Joins a path with '.', as it is shown to users.
std::string join_path(const std::vector<std::string>& path);

}  // namespace vitprobe
