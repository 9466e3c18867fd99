#include "model/fast_path.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "kernels/softmax.h"

namespace vitprobe {

FastEncoderPath::FastEncoderPath(const VitConfig& config, const VitWeights& weights, at::ScalarType dtype,
                                 std::vector<at::Tensor> attention_biases)
    : config_(config),
      dtype_(dtype),
      weights_(weights),
      patch_(weights.patch_weight.reshape({config.embed_dim, -1}), weights.patch_bias, dtype, Activation::None),
      attention_biases_(std::move(attention_biases)) {
  for (const auto& block : weights.blocks) {
    blocks_.push_back({PackedLinear(block.qkv_weight, block.qkv_bias, dtype, Activation::None),
                       PackedLinear(block.proj_weight, block.proj_bias, dtype, Activation::None),
                       PackedLinear(block.fc1_weight, block.fc1_bias, dtype, Activation::Gelu),
                       PackedLinear(block.fc2_weight, block.fc2_bias, dtype, Activation::None)});
  }
}

at::Tensor FastEncoderPath::embed_patches(const at::Tensor& images) const {
  const int64_t batch = images.size(0);
  const int64_t patch = config_.patch_size;
  const int64_t grid_h = images.size(2) / patch, grid_w = images.size(3) / patch;
  auto patches = images.reshape({batch, images.size(1), grid_h, patch, grid_w, patch})
                     .permute({0, 2, 4, 1, 3, 5})
                     .reshape({batch * grid_h * grid_w, -1});
  return patch_(patches).view({batch, grid_h * grid_w, config_.embed_dim});
}

at::Tensor FastEncoderPath::run_block(int index, const at::Tensor& x, BlockCapture* capture) const {
  const auto& block = weights_.blocks[index];
  const auto& packed = blocks_[index];
  const int64_t batch = x.size(0), tokens = x.size(1), dim = config_.embed_dim;
  const int64_t heads = config_.num_heads, head_dim = config_.head_dim();
  const int64_t rows = batch * tokens;
  const auto flat = x.reshape({rows, dim});

  auto y = at::layer_norm(flat, {dim}, block.norm1_weight, block.norm1_bias, config_.norm_eps);
  // (B, T, 3, H, hd) -> (3, B, H, T, hd): one copy gives dense q, k, v for the batched products.
  auto qkv = packed.qkv(y).view({batch, tokens, 3, heads, head_dim}).permute({2, 0, 3, 1, 4}).contiguous();
  const auto q = qkv[0], k = qkv[1], v = qkv[2];
  // Scores in fp32 whatever the compute dtype, so the softmax keeps its precision.
  auto scores = at::empty({batch, heads, tokens, tokens}, x.options().dtype(at::kFloat));
  batched_matmul(q, k.transpose(-2, -1), scores, static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim))));
  // BEiT / SimMIM relative position bias, (heads, T, T) fp32, added to the scaled logits before the softmax.
  if (!attention_biases_.empty() && attention_biases_[index].defined()) scores.add_(attention_biases_[index]);
  // In place: the (B, H, T, T) buffer is the largest of the block; a second one would be faulted in anew.
  softmax_lastdim_(scores);
  const auto& probabilities = scores;
  if (capture != nullptr && capture->want_attention) capture->attention = probabilities;
  const auto mixing = dtype_ == at::kFloat ? probabilities : probabilities.to(dtype_);
  auto context = at::empty({batch, heads, tokens, head_dim}, x.options());
  batched_matmul(mixing, v, context, 1.0f);
  context = context.permute({0, 2, 1, 3}).reshape({rows, dim});

  at::Tensor h;
  if (capture != nullptr && capture->want_magnitudes) {
    // The branch is needed on its own for its norms, before LayerScale (the official ratio) and after: no
    // fused scale or residual here, the same steps as the reference path.
    auto branch = packed.proj(context);
    capture->branch_norm = at::linalg_vector_norm(branch, 2, {-1}, false, at::kFloat).view({batch, tokens});
    capture->residual_norm = at::linalg_vector_norm(flat, 2, {-1}, false, at::kFloat).view({batch, tokens});
    if (block.ls1_gamma.defined()) {
      branch = branch * block.ls1_gamma;
      capture->branch_norm_after_layer_scale =
          at::linalg_vector_norm(branch, 2, {-1}, false, at::kFloat).view({batch, tokens});
    } else {
      capture->branch_norm_after_layer_scale = capture->branch_norm;
    }
    h = flat + branch;
  } else {
    h = packed.proj(context, flat, block.ls1_gamma);
  }
  const auto normed = at::layer_norm(h, {dim}, block.norm2_weight, block.norm2_bias, config_.norm_eps);
  // The MLP in row chunks whose hidden activations stay under 16 MiB: heap blocks the allocator keeps
  // (common/heap.h) instead of fresh mappings faulted in page by page (ViT-B/16, batch 16: 39 MB at once).
  const int64_t hidden_bytes_per_row = static_cast<int64_t>(block.fc1_weight.size(0)) * static_cast<int64_t>(x.element_size());
  const int64_t chunk = std::max<int64_t>(256, (int64_t{16} << 20) / std::max<int64_t>(1, hidden_bytes_per_row));
  if (rows <= chunk) return packed.fc2(packed.fc1(normed), h, block.ls2_gamma).view({batch, tokens, dim});
  std::vector<at::Tensor> parts;
  for (int64_t first = 0; first < rows; first += chunk) {
    const int64_t n = std::min(chunk, rows - first);
    parts.push_back(packed.fc2(packed.fc1(normed.narrow(0, first, n)), h.narrow(0, first, n), block.ls2_gamma));
  }
  return at::cat(parts).view({batch, tokens, dim});
}

}  // namespace vitprobe
