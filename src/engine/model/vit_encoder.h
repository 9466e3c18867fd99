#pragma once
// The ViT encoder: immutable weights plus a forward that returns, on request and without recomputation,
// everything the analyses need (final tokens, block outputs, attention probabilities, magnitudes).
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <optional>
#include <vector>

#include "model/vit_config.h"

namespace vitprobe {

/// Weights of one pre-norm transformer block (timm layout).
struct BlockWeights {
  at::Tensor norm1_weight, norm1_bias;
  at::Tensor qkv_weight, qkv_bias;  // (3D, D), (3D) or undefined
  at::Tensor proj_weight, proj_bias;
  at::Tensor ls1_gamma, ls2_gamma;  // (D) or undefined
  at::Tensor rel_pos_bias_table;    // ((2g-1)^2 + 3, heads): BEiT / SimMIM per-block relative position bias, or undefined
  at::Tensor norm2_weight, norm2_bias;
  at::Tensor fc1_weight, fc1_bias, fc2_weight, fc2_bias;
};

/// All encoder weights in timm layout. Tensors that a configuration does not use stay undefined.
struct VitWeights {
  at::Tensor patch_weight, patch_bias;  // (D, C, P, P), (D)
  at::Tensor cls_token;                 // (1, 1, D)
  at::Tensor reg_token;                 // (1, R, D)
  at::Tensor pos_embed;                 // (1, [1 +] N, D); computed for sin-cos configurations, undefined for none
  at::Tensor rel_pos_bias_table;        // ((2g-1)^2 + 3, heads): the relative position bias shared by every block
  std::vector<BlockWeights> blocks;
  at::Tensor norm_weight, norm_bias;
};

/// Calls `fn` with each tensor slot of `weights` and its timm key ("blocks.3.attn.qkv.weight"); slots a
/// configuration does not use are passed too, undefined. Used for dtype/device moves and for saving.
void visit_weights(VitWeights& weights, const std::function<void(const std::string&, at::Tensor&)>& fn);
/// The tensors of one block under `prefix` (e.g. "blocks.3."), timm names, in the order visit_weights uses
/// (undefined ones too: qkv bias, LayerScale gammas); shared with the MAE decoder's blocks.
void visit_block_weights(BlockWeights& block, const std::string& prefix,
                         const std::function<void(const std::string&, at::Tensor&)>& fn);

/// What a caller wants back from one forward pass.
struct ForwardRequest {
  /// Final tokens (after the final norm when the model has one).
  bool final_tokens = true;
  /// Blocks whose output (pre final norm) is returned.
  std::vector<int> block_outputs;
  /// Blocks whose attention probabilities (B, heads, T, T) are returned.
  std::vector<int> attention_blocks;
  /// Per block, the L2 norms (B, T) of the attention branch output (before and after LayerScale) and of the
  /// residual it is added to.
  bool magnitudes = false;
};

/// What one forward pass returns; fields not requested stay empty.
struct ForwardResult {
  at::Tensor tokens;                         // (B, T, D)
  std::map<int, at::Tensor> block_outputs;   // block -> (B, T, D)
  std::map<int, at::Tensor> attention;       // block -> (B, heads, T, T)
  /// Per block (B, T): |attn(norm1(x))|, the attention branch after its output projection and before
  /// LayerScale, as gmum/beyond_cls measures it (models_simmim.py:139-146: y_norm is taken before gamma_1 * y).
  std::vector<at::Tensor> attention_branch_norms;
  /// Per block (B, T): |ls1 * attn(norm1(x))|, the branch as it is added to the residual; the same tensors
  /// as attention_branch_norms for models without LayerScale.
  std::vector<at::Tensor> attention_branch_norms_after_layer_scale;
  std::vector<at::Tensor> residual_norms;          // per block (B, T): |x| entering the block
};

/// What one block can report besides its output.
struct BlockCapture {
  at::Tensor attention;           // (B, heads, T, T) when `want_attention`
  at::Tensor branch_norm;         // (B, T) fp32 when `want_magnitudes`: before LayerScale
  at::Tensor branch_norm_after_layer_scale;  // (B, T) fp32 when `want_magnitudes`: after LayerScale
  at::Tensor residual_norm;       // (B, T) fp32 when `want_magnitudes`
  bool want_attention = false;
  bool want_magnitudes = false;
};

/// One pre-norm transformer block on tokens (B, T, D): x + ls1 * attn(norm1(x)), then + ls2 * mlp(norm2(.)).
/// `attention_bias` (heads, T, T) fp32, when defined, is added to the attention logits before the softmax
/// (BEiT / SimMIM relative position bias: see VitEncoder::attention_bias). Attention probabilities, when
/// captured, come from an fp32 softmax whatever the compute dtype. Autograd-friendly (no guards), so
/// training code (pretraining) shares it with inference.
at::Tensor run_block(const BlockWeights& block, const VitConfig& config, const at::Tensor& x,
                     BlockCapture* capture = nullptr, const at::Tensor& attention_bias = at::Tensor());

/// Patch embedding of images (B, C, H, W) -> (B, N, D), without position embeddings or prefix tokens.
/// `patch_matrix` is the patch_embed weight reshaped to (D, C*P*P).
at::Tensor embed_patches(const at::Tensor& images, const at::Tensor& patch_matrix, const at::Tensor& patch_bias,
                         int patch_size);

/// Which implementation runs the forward: the libtorch reference, or the oneDNN fast path (CPU).
enum class EncoderBackend { Auto, Reference, Fast };

/// Parses "auto" / "reference" / "fast"; throws BadInput otherwise.
EncoderBackend parse_backend(const std::string& name);

class FastEncoderPath;

/// A ViT encoder whose weights are fixed at construction, held in the compute dtype.
class VitEncoder {
 public:
  /// Takes the weights (fp32, timm layout, on the device the encoder runs on: see weights_on); checks every
  /// shape against `config` and converts once to `dtype`. bf16 on CUDA follows PyTorch's autocast: matrix
  /// products in bf16, the residual stream, LayerNorm, position embeddings and LayerScale in fp32.
  /// `Auto` picks the fast path when this build has it and the weights are on the CPU.
  VitEncoder(VitConfig config, VitWeights weights, at::ScalarType dtype, EncoderBackend backend = EncoderBackend::Auto);

  const VitConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }
  /// "fast" or "reference": what forward() runs.
  std::string backend_name() const;
  /// The weights in timm layout, in the compute dtype.
  const VitWeights& weights() const { return weights_; }

  /// Runs images (B, C, H, W), already normalised, through the encoder. Blocks after the last one needed are
  /// skipped when the final tokens are not requested. Runs without autograd.
  ForwardResult forward(const at::Tensor& images, const ForwardRequest& request) const;

  /// True under the autocast-style split (bf16 on CUDA): tokens and block outputs come back fp32.
  bool mixed_precision() const { return mixed_; }

  /// The additive attention-logit bias of `block`, (heads, T, T) fp32: its own relative position bias plus
  /// the shared one (official order: attn + own + shared, SimMIM vision_transformer.py:104-113); undefined
  /// for models without one. Computed once at construction.
  const at::Tensor& attention_bias(int block) const;

 private:
  at::Tensor embed(const at::Tensor& images) const;

  VitConfig config_;
  VitWeights weights_;
  at::Tensor patch_matrix_;  // patch_embed weight as (D, C*P*P), in the compute dtype
  std::shared_ptr<const FastEncoderPath> fast_;  // null: the reference path
  at::ScalarType dtype_;
  bool mixed_ = false;  // autocast-style bf16 (CUDA)
  std::vector<at::Tensor> attention_biases_;  // per block; empty without a relative position bias
};

/// `weights` with every tensor moved to `device` (before an encoder is built there).
VitWeights weights_on(VitWeights weights, const at::Device& device);

/// Checks that `weights` has every tensor `config` needs with the right shape; throws BadInput naming the
/// timm key and the expected and found shapes.
void check_weight_shapes(const VitConfig& config, const VitWeights& weights);

}  // namespace vitprobe
