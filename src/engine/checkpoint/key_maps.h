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
enum class CheckpointSource { Timm, Mae, Dino, Ibot, MocoV3, Dinov2, Ijepa, Torchvision, Beit };

/// Lower-case name ("timm", "mae", "dino", "ibot", "mocov3", "dinov2", "ijepa", "torchvision", "beit").
/// "beit" is the layout of BEiT and of SimMIM's ViT (microsoft/SimMIM models/vision_transformer.py, also
/// gmum/beyond_cls models_simmim.py and timm's Beit): q_bias / v_bias, gamma_1 / gamma_2, relative
/// position bias tables.
std::string source_name(CheckpointSource source);
/// Parses a --format value ("simmim" is another name of "beit"); nullopt for "auto" or anything unknown.
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
  /// BEiT layout: blocks.N.attn.q_bias and v_bias were merged into blocks.N.attn.qkv.bias = cat(q, 0, v).
  bool zero_k_bias = false;
};

/// Renames `state_dict` with the table of `source` and sorts every key into encoder, classifier or ignored.
/// Wherever a block has BEiT's attn.q_bias and attn.v_bias (any source), they become one attn.qkv.bias with
/// a zero k part, as the official forward builds it (SimMIM vision_transformer.py:94-97); one without the
/// other is refused (BadInput naming the key). Relative position tables keep their names
/// (blocks.N.attn.relative_position_bias_table, rel_pos_bias.relative_position_bias_table); the stored
/// relative_position_index buffers are encoder keys too, for the loader to check against its own index.
RemappedKeys remap_to_timm(const StateDict& state_dict, CheckpointSource source);

}  // namespace vitprobe
