#include "pretrain/trainable_vit.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "common/errors.h"
#include "model/pos_embed.h"

namespace vitprobe {
namespace {

at::Tensor zeros(at::IntArrayRef shape) { return at::zeros(shape, at::TensorOptions().dtype(at::kFloat)); }
at::Tensor ones(at::IntArrayRef shape) { return at::ones(shape, at::TensorOptions().dtype(at::kFloat)); }

// nn.init.xavier_uniform_: U(-a, a), a = sqrt(6 / (fan_in + fan_out)) for a (fan_out, fan_in) matrix.
at::Tensor xavier_uniform(int64_t fan_out, int64_t fan_in, at::Generator& generator) {
  const double bound = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return zeros({fan_out, fan_in}).uniform_(-bound, bound, generator);
}

// timm's trunc_normal_(std, a=-2, b=2): uniform in [cdf(a), cdf(b)] mapped through the inverse normal cdf.
at::Tensor trunc_normal(at::IntArrayRef shape, double std, at::Generator& generator) {
  auto normal_cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  const double low = 2.0 * normal_cdf(-2.0) - 1.0;
  const double high = 2.0 * normal_cdf(2.0) - 1.0;
  auto values = zeros(shape).uniform_(low, high, generator);
  values.erfinv_().mul_(std * std::sqrt(2.0));
  return values.clamp_(-2.0, 2.0);
}

at::Tensor linear_weight(int64_t out, int64_t in, VitInit init, at::Generator& generator) {
  return init == VitInit::Mae ? xavier_uniform(out, in, generator) : trunc_normal({out, in}, 0.02, generator);
}

}  // namespace

at::Generator make_generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

VitWeights init_vit_weights(const VitConfig& config, VitInit init, at::Generator& generator) {
  config.validate();
  if (!config.class_token || !config.pos_embed_has_cls_slot || config.num_registers != 0 || config.layer_scale ||
      config.pos_embed != PosEmbedKind::Learned || !config.final_norm) {
    throw BadInput(
        "init_vit_weights: pretraining supports the plain ViT ([cls], pos_embed with a [cls] slot, "
        "no registers, no LayerScale, final norm)");
  }
  const int64_t dim = config.embed_dim;
  const int64_t hidden = config.mlp_hidden_dim;
  const int64_t patch_values = static_cast<int64_t>(config.in_chans) * config.patch_size * config.patch_size;
  VitWeights weights;
  if (init == VitInit::Mae) {
    weights.patch_weight =
        xavier_uniform(dim, patch_values, generator).view({dim, config.in_chans, config.patch_size, config.patch_size});
    weights.patch_bias = zeros({dim});
    weights.cls_token = zeros({1, 1, dim}).normal_(0.0, 0.02, generator);
    weights.pos_embed =
        at::cat({zeros({1, dim}), sincos_2d_pos_embed(config.embed_dim, config.grid_size())}, 0).unsqueeze(0);
  } else {
    // Conv2d.reset_parameters: kaiming_uniform(a=sqrt(5)) gives U(+-1/sqrt(fan_in)), the bias the same.
    const double bound = 1.0 / std::sqrt(static_cast<double>(patch_values));
    weights.patch_weight =
        zeros({dim, config.in_chans, config.patch_size, config.patch_size}).uniform_(-bound, bound, generator);
    weights.patch_bias = zeros({dim}).uniform_(-bound, bound, generator);
    weights.pos_embed = trunc_normal({1, config.num_patches() + 1, dim}, 0.02, generator);
    weights.cls_token = trunc_normal({1, 1, dim}, 0.02, generator);
  }
  for (int i = 0; i < config.depth; ++i) {
    BlockWeights block;
    block.norm1_weight = ones({dim});
    block.norm1_bias = zeros({dim});
    // timm's MAE model initialises qkv as one (3D, D) Linear, as here.
    block.qkv_weight = linear_weight(3 * dim, dim, init, generator);
    if (config.qkv_bias) block.qkv_bias = zeros({3 * dim});
    block.proj_weight = linear_weight(dim, dim, init, generator);
    block.proj_bias = zeros({dim});
    block.norm2_weight = ones({dim});
    block.norm2_bias = zeros({dim});
    block.fc1_weight = linear_weight(hidden, dim, init, generator);
    block.fc1_bias = zeros({hidden});
    block.fc2_weight = linear_weight(dim, hidden, init, generator);
    block.fc2_bias = zeros({dim});
    weights.blocks.push_back(std::move(block));
  }
  weights.norm_weight = ones({dim});
  weights.norm_bias = zeros({dim});
  visit_weights(weights, [&](const std::string& key, at::Tensor& tensor) {
    if (!tensor.defined()) return;
    tensor = tensor.contiguous();
    tensor.set_requires_grad(!(init == VitInit::Mae && key == "pos_embed"));
  });
  check_weight_shapes(config, weights);
  return weights;
}

std::vector<TrainableTensor> trainable_tensors(VitWeights& weights, const std::string& prefix) {
  std::vector<TrainableTensor> tensors;
  visit_weights(weights, [&](const std::string& key, at::Tensor& tensor) {
    if (tensor.defined() && tensor.requires_grad()) tensors.push_back({prefix + key, tensor, tensor.dim() > 1});
  });
  return tensors;
}

std::vector<BlockWeights> blocks_in_dtype(const std::vector<BlockWeights>& blocks, at::ScalarType dtype) {
  if (dtype == at::kFloat) return blocks;
  std::vector<BlockWeights> cast = blocks;
  VitWeights holder;
  holder.blocks = std::move(cast);
  visit_weights(holder, [&](const std::string&, at::Tensor& tensor) {
    if (tensor.defined()) tensor = tensor.to(dtype);
  });
  return holder.blocks;
}

at::Tensor encode_tokens(const VitWeights& weights, const VitConfig& config, const at::Tensor& images,
                         const at::Tensor& visible_patches, at::ScalarType dtype) {
  const int64_t batch = images.size(0);
  const int64_t dim = config.embed_dim;
  if (images.dim() != 4 || images.size(2) != images.size(3) || images.size(2) % config.patch_size != 0) {
    throw BadInput("encode_tokens: images must be (B, C, S, S) with S a multiple of the patch size " +
                   std::to_string(config.patch_size));
  }
  const int64_t grid = images.size(2) / config.patch_size;
  const auto patch_matrix = weights.patch_weight.reshape({dim, -1});
  auto x = embed_patches(images.to(at::kFloat), patch_matrix, weights.patch_bias, config.patch_size);
  auto patch_pos = weights.pos_embed.narrow(1, 1, config.num_patches());
  if (grid != config.grid_size()) {
    const int64_t old_grid = config.grid_size();
    auto table = patch_pos.reshape({1, old_grid, old_grid, dim}).permute({0, 3, 1, 2});
    table = at::upsample_bicubic2d(table, {grid, grid}, /*align_corners=*/false);
    patch_pos = table.permute({0, 2, 3, 1}).reshape({1, grid * grid, dim});
  }
  x = x + patch_pos;
  if (visible_patches.defined()) {
    x = x.gather(1, visible_patches.unsqueeze(-1).expand({-1, -1, dim}));
  }
  auto cls = (weights.cls_token + weights.pos_embed.narrow(1, 0, 1)).expand({batch, 1, dim});
  x = at::cat({cls, x}, 1).to(dtype);
  const auto blocks = blocks_in_dtype(weights.blocks, dtype);
  for (const auto& block : blocks) x = run_block(block, config, x);
  return at::layer_norm(x.to(at::kFloat), {dim}, weights.norm_weight, weights.norm_bias, config.norm_eps);
}

VitWeights detached_copy(const VitWeights& weights) {
  VitWeights copy = weights;
  visit_weights(copy, [](const std::string&, at::Tensor& tensor) {
    if (tensor.defined()) tensor = tensor.detach().clone();
  });
  return copy;
}

}  // namespace vitprobe
