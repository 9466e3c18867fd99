#pragma once
// The fast inference path of the encoder: oneDNN products with packed weights and fused bias, GELU,
// LayerScale and residual additions; attention as two batched products around one softmax. Same results as
// the libtorch reference path in VitEncoder (tests compare them).
#include <ATen/core/Tensor.h>

#include <vector>

#include "kernels/onednn_matmul.h"
#include "model/vit_encoder.h"

namespace vitprobe {

/// Packed weights of every block and the patch embedding, built once from an encoder's weights.
class FastEncoderPath {
 public:
  /// `weights` in timm layout (any float dtype); products run in `dtype`. `attention_biases`: per block the
  /// (heads, T, T) fp32 bias added to the attention logits (VitEncoder::attention_bias), or empty.
  FastEncoderPath(const VitConfig& config, const VitWeights& weights, at::ScalarType dtype,
                  std::vector<at::Tensor> attention_biases = {});

  /// Patch embedding of images (B, C, H, W) in the compute dtype -> (B, N, D).
  at::Tensor embed_patches(const at::Tensor& images) const;

  /// One block on x (B, T, D), filling `capture` like run_block.
  at::Tensor run_block(int index, const at::Tensor& x, BlockCapture* capture) const;

 private:
  struct PackedBlock {
    PackedLinear qkv, proj, fc1, fc2;
  };
  VitConfig config_;
  at::ScalarType dtype_;
  VitWeights weights_;  // shares storage with the encoder's tensors: norms and LayerScale vectors
  PackedLinear patch_;
  std::vector<PackedBlock> blocks_;
  std::vector<at::Tensor> attention_biases_;
};

}  // namespace vitprobe
