#pragma once
// Turns a checkpoint file into a ready encoder: unwrap containers, strip prefixes, rename keys, infer the
// architecture from the weights, check strictly, and report everything that was not used.
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/key_maps.h"
#include "model/vit_encoder.h"

namespace vitprobe {

/// How to load a checkpoint; filled by the CLI.
struct LoadOptions {
  std::string format = "auto";  // a source name from format_names()
  std::string arch;             // a preset name ("vit_base_patch16"), optional
  int num_heads = 0;            // 0: from --arch, the checkpoint's metadata, or the width convention
  int img_size = 0;             // 0: the checkpoint's own; otherwise pos_embed is resampled to this size
  std::string dtype = "fp32";   // fp32 | bf16
  std::string device = "cpu";   // cpu | cuda
  std::string backend = "auto"; // auto | reference | fast (oneDNN, CPU)
  bool allow_nonfinite = false; // load weights holding NaN or inf instead of refusing them
};

/// What the loader found and did, for `inspect` and for error messages.
struct LoadReport {
  std::string file;
  std::string format;     // torch-zip | safetensors
  std::string source;     // detected or forced key map
  std::string container;  // the wrapper the encoder was taken from ("model", "teacher", ...), empty if flat
  std::string prefix;     // the prefix stripped from encoder keys ("module.base_encoder.", ...)
  std::vector<std::string> ignored_keys;     // tensor keys not used by the encoder (classifier included)
  std::vector<std::string> skipped_entries;  // non-tensor leaves and other containers, with their kind
  std::vector<std::string> notes;            // things the user should know (resampling, assumed head count)
  int native_img_size = 0;                   // image size the checkpoint's pos_embed was trained for
  std::map<std::string, std::string> metadata;  // safetensors metadata
};

/// A linear classifier stored with the encoder (timm head.*, torchvision heads.head.*).
struct Classifier {
  at::Tensor weight;  // (num_classes, D), fp32
  at::Tensor bias;    // (num_classes), fp32
};

/// A loaded checkpoint: the encoder, an optional classifier and the report.
struct LoadedModel {
  std::shared_ptr<const VitEncoder> encoder;
  std::optional<Classifier> classifier;
  LoadReport report;
};

/// Reads `file` and builds the encoder; throws BadInput (naming the file) for anything unusable: among others
/// blocks that do not run 0..depth-1 with one layout, and (unless allow_nonfinite) NaN or inf weights.
LoadedModel load_model(const std::string& file, const LoadOptions& options);

/// Parses "fp32" / "bf16" into a dtype; throws BadInput otherwise.
at::ScalarType parse_dtype(const std::string& name);

}  // namespace vitprobe
