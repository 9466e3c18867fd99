#pragma once
// Checkpoint key names, one table per source, and the pure functions that detect a source from its keys
// and rename a state dict into timm's names (the layout the encoder uses).
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vitprobe {

/// Where a checkpoint comes from; decides which key table applies.
enum class CheckpointSource { Timm, Mae, Dino, Ibot, MocoV3, Dinov2, Ijepa, Torchvision };

/// Lower-case name ("timm", "mae", "dino", "ibot", "mocov3", "dinov2", "ijepa", "torchvision").
std::string source_name(CheckpointSource source);
/// Parses a --format value; nullopt for "auto" or anything unknown (check with `is_known_format`).
std::optional<CheckpointSource> parse_source(const std::string& name);
/// The accepted --format values.
std::vector<std::string> format_names();

/// One renaming rule: an ECMAScript regex on the source key and its replacement ($1 ... groups).
struct KeyRule {
  const char* pattern;
  const char* replacement;
};

/// The renaming table of a source, applied in order after wrapper and prefix removal.
const std::vector<KeyRule>& key_rules(CheckpointSource source);

/// A state dict in file order.
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

/// Guesses the source from sentinel keys and the container/prefix the encoder was found under.
CheckpointSource detect_source(const StateDict& state_dict, const std::string& container_and_prefix);

/// A state dict renamed into timm names and split into encoder keys, classifier keys and the rest.
struct RemappedKeys {
  StateDict encoder;                 // timm encoder keys
  StateDict classifier;              // head.weight / head.bias when they form a linear classifier
  std::vector<std::string> ignored;  // original names of every key not used by the encoder or classifier
};

/// Renames `state_dict` with the table of `source` and sorts every key into encoder, classifier or ignored.
RemappedKeys remap_to_timm(const StateDict& state_dict, CheckpointSource source);

}  // namespace vitprobe
