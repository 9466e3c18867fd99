#pragma once
// Masked autoencoder (He et al., CVPR 2022; official models_mae.py): the encoder sees only the visible
// patches; a light decoder takes the encoded tokens plus a shared mask token at every masked position, adds
// its own fixed 2-D sin-cos position embedding, and predicts the pixels of every patch; the loss is the MSE on
// the masked patches of the per-patch normalised pixels (norm_pix_loss).
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <vector>

#include "model/vit_encoder.h"
#include "pretrain/masking.h"
#include "pretrain/optimizer.h"

namespace vitprobe {

/// Shape of the MAE decoder (MAE's ViT-B recipe uses 512 wide, 8 blocks, 16 heads; small encoders take less).
struct MaeDecoderShape {
  int dim = 128;
  int depth = 2;
  int num_heads = 4;
  double mlp_ratio = 4.0;
};

/// The decoder's weights: decoder_embed, mask_token, fixed decoder_pos_embed (with a zero [cls] row),
/// blocks, decoder_norm, decoder_pred (to patch_size^2 * channels pixels).
struct MaeDecoderWeights {
  VitConfig block_config;  // width, heads and MLP size of the decoder blocks (for run_block)
  at::Tensor embed_weight, embed_bias;
  at::Tensor mask_token;  // (1, 1, Dd)
  at::Tensor pos_embed;   // (1, 1 + N, Dd), fixed
  std::vector<BlockWeights> blocks;
  at::Tensor norm_weight, norm_bias;
  at::Tensor pred_weight, pred_bias;
};

/// A fresh decoder initialised as MAE's initialize_weights (xavier_uniform Linear, mask_token ~ N(0, 0.02)).
MaeDecoderWeights init_mae_decoder(const VitConfig& encoder, const MaeDecoderShape& shape, at::Generator& generator);

/// The decoder tensors, named "decoder." + MAE's key (decoder_embed.weight, decoder_blocks.0.attn.qkv.weight,
/// mask_token, ...), for the optimizer and checkpoints; the fixed pos_embed is left out.
std::vector<TrainableTensor> decoder_tensors(MaeDecoderWeights& decoder);

/// MAE's patchify: (B, C, H, W) -> (B, N, P*P*C), patches row-major, pixels in (row, column, channel) order.
at::Tensor patchify(const at::Tensor& images, int patch_size);

/// MAE's forward_loss: target patches (B, N, P*P*C), prediction of the same shape, mask (B, N) with 1 at masked
/// patches. With norm_pix the target is normalised per patch, (t - mean) / sqrt(var + 1e-6) with the unbiased
/// variance (torch.var); the loss is the per-patch mean squared error averaged over masked patches.
at::Tensor mae_loss(const at::Tensor& target_patches, const at::Tensor& prediction, const at::Tensor& mask,
                    bool norm_pix);

/// Decoder forward: encoded tokens (B, 1 + K, D) of the visible patches -> pixel predictions (B, N, P*P*C).
at::Tensor decode_patches(const MaeDecoderWeights& decoder, const at::Tensor& encoded,
                          const at::Tensor& restore_indices, at::ScalarType dtype);

}  // namespace vitprobe
