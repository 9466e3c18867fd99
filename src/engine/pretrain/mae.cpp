#include "pretrain/mae.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/errors.h"
#include "model/pos_embed.h"
#include "pretrain/trainable_vit.h"

namespace vitprobe {
namespace {

at::Tensor xavier_uniform(int64_t fan_out, int64_t fan_in, at::Generator& generator) {
  const double bound = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return at::zeros({fan_out, fan_in}).uniform_(-bound, bound, generator);
}

}  // namespace

MaeDecoderWeights init_mae_decoder(const VitConfig& encoder, const MaeDecoderShape& shape, at::Generator& generator) {
  MaeDecoderWeights decoder;
  VitConfig& config = decoder.block_config;
  config.embed_dim = shape.dim;
  config.depth = shape.depth;
  config.num_heads = shape.num_heads;
  config.mlp_hidden_dim = static_cast<int>(shape.dim * shape.mlp_ratio);
  config.img_size = encoder.img_size;
  config.patch_size = encoder.patch_size;
  config.in_chans = encoder.in_chans;
  config.norm_eps = 1e-6;
  if (shape.dim <= 0 || shape.depth <= 0 || shape.num_heads <= 0 || shape.dim % shape.num_heads != 0 ||
      shape.dim % 4 != 0) {
    throw BadInput("MAE decoder: width " + std::to_string(shape.dim) + " must be positive, divisible by 4 and by the " +
                   std::to_string(shape.num_heads) + " heads");
  }
  const int64_t dim = shape.dim;
  const int64_t hidden = config.mlp_hidden_dim;
  const int64_t pixels = static_cast<int64_t>(encoder.patch_size) * encoder.patch_size * encoder.in_chans;
  decoder.embed_weight = xavier_uniform(dim, encoder.embed_dim, generator);
  decoder.embed_bias = at::zeros({dim});
  decoder.mask_token = at::zeros({1, 1, dim}).normal_(0.0, 0.02, generator);
  decoder.pos_embed =
      at::cat({at::zeros({1, dim}), sincos_2d_pos_embed(shape.dim, encoder.grid_size())}, 0).unsqueeze(0);
  for (int i = 0; i < shape.depth; ++i) {
    BlockWeights block;
    block.norm1_weight = at::ones({dim});
    block.norm1_bias = at::zeros({dim});
    block.qkv_weight = xavier_uniform(3 * dim, dim, generator);
    block.qkv_bias = at::zeros({3 * dim});
    block.proj_weight = xavier_uniform(dim, dim, generator);
    block.proj_bias = at::zeros({dim});
    block.norm2_weight = at::ones({dim});
    block.norm2_bias = at::zeros({dim});
    block.fc1_weight = xavier_uniform(hidden, dim, generator);
    block.fc1_bias = at::zeros({hidden});
    block.fc2_weight = xavier_uniform(dim, hidden, generator);
    block.fc2_bias = at::zeros({dim});
    decoder.blocks.push_back(std::move(block));
  }
  decoder.norm_weight = at::ones({dim});
  decoder.norm_bias = at::zeros({dim});
  decoder.pred_weight = xavier_uniform(pixels, dim, generator);
  decoder.pred_bias = at::zeros({pixels});
  for (auto& tensor : decoder_tensors(decoder)) tensor.tensor.set_requires_grad(true);
  return decoder;
}

std::vector<TrainableTensor> decoder_tensors(MaeDecoderWeights& decoder) {
  std::vector<TrainableTensor> tensors;
  auto add = [&](const std::string& name, at::Tensor& tensor) {
    tensors.push_back({"decoder." + name, tensor, tensor.dim() > 1});
  };
  add("decoder_embed.weight", decoder.embed_weight);
  add("decoder_embed.bias", decoder.embed_bias);
  add("mask_token", decoder.mask_token);
  for (size_t i = 0; i < decoder.blocks.size(); ++i) {
    // MAE's decoder blocks are timm blocks without LayerScale: the undefined gammas are left out.
    visit_block_weights(decoder.blocks[i], "decoder_blocks." + std::to_string(i) + ".", [&](const std::string& name, at::Tensor& tensor) {
      if (tensor.defined()) add(name, tensor);
    });
  }
  add("decoder_norm.weight", decoder.norm_weight);
  add("decoder_norm.bias", decoder.norm_bias);
  add("decoder_pred.weight", decoder.pred_weight);
  add("decoder_pred.bias", decoder.pred_bias);
  return tensors;
}

at::Tensor patchify(const at::Tensor& images, int patch_size) {
  const int64_t batch = images.size(0), channels = images.size(1);
  const int64_t grid_h = images.size(2) / patch_size, grid_w = images.size(3) / patch_size;
  // einsum('nchpwq->nhwpqc') of MAE.
  return images.reshape({batch, channels, grid_h, patch_size, grid_w, patch_size})
      .permute({0, 2, 4, 3, 5, 1})
      .reshape({batch, grid_h * grid_w, static_cast<int64_t>(patch_size) * patch_size * channels});
}

at::Tensor mae_loss(const at::Tensor& target_patches, const at::Tensor& prediction, const at::Tensor& mask,
                    bool norm_pix) {
  auto target = target_patches.to(at::kFloat);
  if (norm_pix) {
    const auto mean = target.mean({-1}, /*keepdim=*/true);
    const auto variance = target.var({-1}, /*unbiased=*/true, /*keepdim=*/true);
    target = (target - mean) / (variance + 1e-6).sqrt();
  }
  const auto per_patch = (prediction.to(at::kFloat) - target).pow(2).mean({-1});
  return (per_patch * mask).sum() / mask.sum();
}

at::Tensor decode_patches(const MaeDecoderWeights& decoder, const at::Tensor& encoded,
                          const at::Tensor& restore_indices, at::ScalarType dtype) {
  const auto& config = decoder.block_config;
  const int64_t batch = encoded.size(0);
  const int64_t dim = config.embed_dim;
  const int64_t num_patches = restore_indices.size(1);
  auto x = at::linear(encoded, decoder.embed_weight, decoder.embed_bias);
  const int64_t visible = x.size(1) - 1;
  auto mask_tokens = decoder.mask_token.expand({batch, num_patches - visible, dim});
  auto patches = at::cat({x.narrow(1, 1, visible), mask_tokens}, 1);
  patches = patches.gather(1, restore_indices.unsqueeze(-1).expand({-1, -1, dim}));
  x = (at::cat({x.narrow(1, 0, 1), patches}, 1) + decoder.pos_embed).to(dtype);
  for (const auto& block : blocks_in_dtype(decoder.blocks, dtype)) x = run_block(block, config, x);
  x = at::layer_norm(x.to(at::kFloat), {dim}, decoder.norm_weight, decoder.norm_bias, config.norm_eps);
  return at::linear(x.narrow(1, 1, num_patches), decoder.pred_weight, decoder.pred_bias);
}

}  // namespace vitprobe
