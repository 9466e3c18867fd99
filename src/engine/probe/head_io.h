#pragma once
// Saved probe heads: what `vitprobe probe` writes and `vitprobe evaluate` / `vitprobe maps --heads-dir` read.
//
// A run folder holds heads/<head folder>/ per head (its best learning rate, at its best epoch); the folder
// name is the head name with ':' and ',' turned into '_' (e.g. heads/abmilp_depth=2_act=tanh/).
// Each head folder has two files:
//   head.safetensors  float32 tensors, names as in probe/heads.h:
//                       pool.*                  the learned pooling (abmilp, ep, simpool, aim, vjepa; see probe/poolers.h)
//                       bn.running_mean, bn.running_var   (F)
//                       linear.weight (C, F), linear.bias (C)
//                     The safetensors metadata holds the same config under "vitprobe_head_config".
//   config.json       {"format": "vitprobe-head", "version": 1,
//                      "head": "abmilp:depth=2,act=tanh",  the --heads text, parse with parse_head_spec
//                      "type": "abmilp", "options": {...}  the parsed options
//                      "layout": {"embed_dim", "num_prefix_tokens", "class_token", "grid_size", "num_encoder_heads"},
//                      "num_classes", "class_names", "feature_dim", "trainable_parameters",
//                      "encoder": {"model", "model_sha256", "format", "img_size", "dtype", "block", "final_norm",
//                                  "preprocess": {"resize", "crop", "interpolation", "mean", "std"}},
//                      "training": {"base_lr", "lr", "best_epoch", "top1", "top5", "optimizer", "epochs",
//                                   "batch", "effective_batch", "seed", "features", "data"},
//                      "oracle": {"model", "model_sha256"}  dino heads only: the --oracle-model (absolute path)
//                                                           that `vitprobe evaluate` reloads and checks}
//
// To overlay a head's pooling weights on an image: load_head(folder); run the encoder at encoder.img_size with
// the config's preprocessing; take the output of block encoder.block, apply the final norm when
// encoder.final_norm is true, and call pooling_weights(*loaded.head, tokens, attention) (probe/heads.h); the
// attention of that block is needed for cattn/attn-mean/attn-minent only. Reshape the last dimension to
// (grid_size, grid_size), patches row-major.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "probe/heads.h"

namespace vitprobe {

/// The folder name of a head: ':' and ',' become '_'.
std::string head_folder_name(const std::string& head_name);

/// The layout as stored in config.json, and back (throws BadInput naming `source` for missing fields).
nlohmann::json layout_to_json(const TokenLayout& layout);
TokenLayout layout_from_json(const nlohmann::json& json, const std::string& source);

/// The options of a spec as stored in config.json ("options").
nlohmann::json spec_options_json(const HeadSpec& spec);

/// Writes folder/head.safetensors (the tensors of `state`) and folder/config.json, each atomically.
/// `config` must be the full config (see above).
void save_head(const std::string& folder, const std::vector<NamedTensor>& state, const nlohmann::json& config);

/// A head read back from its folder.
struct LoadedHead {
  std::string folder;
  nlohmann::json config;
  std::unique_ptr<ProbeHead> head;  // on `device`, BatchNorm statistics restored
};

/// Reads folder/config.json and folder/head.safetensors; throws BadInput naming the file for anything
/// inconsistent (unknown head, missing or extra tensors, wrong shapes) and IoError when unreadable.
LoadedHead load_head(const std::string& folder, const at::Device& device = at::kCPU);

/// The head folders under `dir`: `dir` itself when it holds config.json, else dir/heads/*/ and dir/*/ that
/// hold one (sorted). Throws BadInput when there are none.
std::vector<std::string> find_head_folders(const std::string& dir);

}  // namespace vitprobe
