#pragma once
// Pooling weight maps: how much each patch contributes to a pooled representation, per image. `vitprobe maps
// --heads-dir` draws them and `vitprobe embed --features abmilp` embeds the pooled representation; they come
// from probe heads trained by `vitprobe probe` (probe/head_io.h): AbMILP, efficient probing, SimPool,
// multi-head cross-attention, and the attention-weighted fixed aggregations (cattn, attn-mean, attn-minent).
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "image/transforms.h"
#include "model/vit_encoder.h"

namespace vitprobe {

/// A source of pooling weights over the patch tokens of one block's output.
class PoolingWeightSource {
 public:
  virtual ~PoolingWeightSource() = default;

  /// The head's name as given to probe, e.g. "abmilp", "ep:8".
  virtual std::string name() const = 0;
  /// The block whose output tokens the source pools (0-based; the probe's block).
  virtual int input_block() const = 0;
  /// Whether patch_weights / pooled need that block's attention probabilities.
  virtual bool needs_attention() const = 0;
  /// Names of the maps one image gets: one for AbMILP / SimPool / attention-weighted heads, one per query for
  /// efficient probing, one per head for multi-head cross-attention.
  virtual std::vector<std::string> map_names() const = 0;
  /// Whether the head was trained with the encoder's final norm on its block's tokens.
  virtual bool final_norm() const = 0;
  /// One line per way in which this use differs from the head's training: another checkpoint (SHA-256) or
  /// other preprocessing than the head's config records. Empty when they agree.
  virtual std::vector<std::string> mismatches(const std::string& model_sha256, const PreprocessOptions& preprocess) const = 0;
  /// Weights (B, maps, patches) for the block's raw output tokens (B, T, D) in the encoder's token order
  /// (the final norm is applied here when the head was trained with it) and its attention (B, heads, T, T)
  /// when needs_attention(); every map sums to 1 over the patches, except abmilp:content=all, whose
  /// softmax also covers the prefix tokens (the maps then sum to the patches' share).
  virtual at::Tensor patch_weights(const at::Tensor& block_tokens, const at::Tensor& attention) const = 0;
  /// The head's aggregated representation (B, F) before its BatchNorm, as the probe trained on it.
  virtual at::Tensor pooled(const at::Tensor& block_tokens, const at::Tensor& attention) const = 0;

  /// Asks a forward for what patch_weights / pooled read: the input block's output, and its attention when
  /// needs_attention().
  void add_inputs_to(ForwardRequest& request) const;
  /// patch_weights / pooled on the result of a forward whose request went through add_inputs_to.
  at::Tensor patch_weights_of(const ForwardResult& result) const;
  at::Tensor pooled_of(const ForwardResult& result) const;
};

/// The pooled representation: sum over patches of weight * patch token, (B, maps * D) from block tokens
/// (B, T, D) and weights (B, maps, patches), with patches the last `weights.size(2)` tokens.
at::Tensor pool_patches(const at::Tensor& block_tokens, const at::Tensor& weights);

/// Loads the heads under `heads_dir` (a probe run folder or one head folder) that weight patches, for
/// `encoder`. Heads that weight no patches (cls, mean, cls+mean, center, knn) are skipped, and so is dino
/// (its weights are a second encoder's, the oracle's, [cls] attention: `maps --model ORACLE` draws them),
/// with a line in `notes` when given. Throws BadInput naming the folder when none is left, or when a head
/// was trained on another token layout (width, grid, [cls], registers) than the encoder has.
std::vector<std::unique_ptr<PoolingWeightSource>> load_pooling_heads(const std::string& heads_dir,
                                                                      std::shared_ptr<const VitEncoder> encoder,
                                                                      std::vector<std::string>* notes = nullptr);

}  // namespace vitprobe
