#pragma once
// A ViT encoder being trained: fp32 leaf tensors in timm layout (VitWeights), initialised as the official
// MAE and DINO code do, and a differentiable forward that reuses the inference path (embed_patches,
// run_block) on all patches, on a subset of visible patches (MAE) or at another crop size (DINO local crops).
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "model/vit_encoder.h"
#include "pretrain/optimizer.h"

namespace vitprobe {

/// How a fresh encoder is initialised.
enum class VitInit {
  /// MAE (models_mae.py initialize_weights): fixed 2-D sin-cos pos_embed with a zero [cls] row (not trained),
  /// xavier_uniform on every Linear and on the patch projection viewed as (D, C*P*P), cls_token ~ N(0, 0.02).
  Mae,
  /// DINO (vision_transformer.py): learned pos_embed and cls_token ~ trunc_normal(0.02), Linear weights
  /// trunc_normal(0.02), the patch projection keeps PyTorch's Conv2d default (uniform +-1/sqrt(fan_in)).
  Dino,
};

/// A generator for initialisation, seeded (libtorch's CPU Mersenne twister; the same numbers for any thread count).
at::Generator make_generator(uint64_t seed);

/// Fresh fp32 encoder weights for `config` (which must have a [cls] token, a learned-layout pos_embed with a
/// [cls] slot, no registers and no LayerScale); every tensor requires grad except MAE's fixed pos_embed.
VitWeights init_vit_weights(const VitConfig& config, VitInit init, at::Generator& generator);

/// The encoder tensors that are trained, named "PREFIX" + timm key; 1-D tensors (biases, norms) get no
/// weight decay. Tensors that do not require grad (MAE's pos_embed) are left out.
std::vector<TrainableTensor> trainable_tensors(VitWeights& weights, const std::string& prefix);

/// Copies of the block weights cast to `dtype` inside the autograd graph (gradients flow back to the fp32
/// leaves), for bf16 compute; returns the blocks as they are for fp32.
std::vector<BlockWeights> blocks_in_dtype(const std::vector<BlockWeights>& blocks, at::ScalarType dtype);

/// Encoder forward with autograd: images (B, C, S, S) normalised, any S divisible by the patch size (the patch
/// rows of pos_embed are resized bicubically when S differs from config.img_size, as DINO's
/// interpolate_pos_encoding). `visible_patches` (B, K) int64, when defined, keeps only those patches (MAE),
/// in that order. Returns the tokens after the final norm, fp32 (B, 1 + K or 1 + N, D); blocks run in `dtype`.
at::Tensor encode_tokens(const VitWeights& weights, const VitConfig& config, const at::Tensor& images,
                         const at::Tensor& visible_patches, at::ScalarType dtype);

/// Detached fp32 copies of every defined tensor (for the EMA teacher and for export).
VitWeights detached_copy(const VitWeights& weights);

}  // namespace vitprobe
