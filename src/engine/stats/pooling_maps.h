#pragma once
// Pooling weight maps: how much each patch contributes to a pooled representation, per image. The maps
// and embed commands draw / use them; trained probe heads (AbMILP, efficient probing, multi-head
// cross-attention) will provide them once probe heads exist (`--heads-dir`, `--features abmilp`).
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "model/vit_config.h"

namespace vitprobe {

/// A source of pooling weights over the patch tokens of one block's output.
class PoolingWeightSource {
 public:
  virtual ~PoolingWeightSource() = default;

  /// A short name for captions and files, e.g. "abmilp", "ep32".
  virtual std::string name() const = 0;
  /// The block whose output tokens the source pools (0-based; the probe's block).
  virtual int input_block() const = 0;
  /// Names of the maps one image gets: one for AbMILP, one per query for efficient probing, one per head
  /// for multi-head cross-attention.
  virtual std::vector<std::string> map_names() const = 0;
  /// Weights (B, maps, patches) for block tokens (B, T, D) in the encoder's token order; every map sums to 1
  /// over the patches.
  virtual at::Tensor patch_weights(const at::Tensor& block_tokens) const = 0;
};

/// The pooled representation: sum over patches of weight * patch token, (B, maps * D) from block tokens
/// (B, T, D) and weights (B, maps, patches), with patches the last `weights.size(2)` tokens.
at::Tensor pool_patches(const at::Tensor& block_tokens, const at::Tensor& weights);

/// Loads the pooling heads of a trained probe directory for an encoder of `config`. Trained probe heads do
/// not exist in this build yet, so this throws BadInput "... not available yet" naming the directory.
std::vector<std::unique_ptr<PoolingWeightSource>> load_pooling_heads(const std::string& heads_dir,
                                                                      const VitConfig& config);

}  // namespace vitprobe
