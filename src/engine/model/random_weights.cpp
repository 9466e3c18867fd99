#include "model/random_weights.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

namespace vitprobe {

VitWeights random_vit_weights(const VitConfig& config, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t d = config.embed_dim;
  const int64_t hidden = config.mlp_hidden_dim;
  auto normal = [&](std::vector<int64_t> shape) { return at::normal(0.0, 0.02, shape, generator); };
  auto ones = [](int64_t n) { return at::ones({n}); };
  auto zeros = [](int64_t n) { return at::zeros({n}); };
  VitWeights weights;
  weights.patch_weight = normal({d, config.in_chans, config.patch_size, config.patch_size});
  weights.patch_bias = zeros(d);
  if (config.class_token) weights.cls_token = normal({1, 1, d});
  if (config.num_registers > 0) weights.reg_token = normal({1, config.num_registers, d});
  const int64_t pos_rows = config.num_patches() + (config.class_token && config.pos_embed_has_cls_slot ? 1 : 0);
  if (config.pos_embed != PosEmbedKind::None) weights.pos_embed = normal({1, pos_rows, d});
  const std::vector<int64_t> bias_table = {config.num_relative_distances(), config.num_heads};
  if (config.shared_rel_pos_bias) weights.rel_pos_bias_table = normal(bias_table);
  for (int i = 0; i < config.depth; ++i) {
    BlockWeights block;
    block.norm1_weight = ones(d);
    block.norm1_bias = zeros(d);
    block.qkv_weight = normal({3 * d, d});
    if (config.qkv_bias) block.qkv_bias = zeros(3 * d);
    block.proj_weight = normal({d, d});
    block.proj_bias = zeros(d);
    if (config.layer_scale) {
      block.ls1_gamma = at::full({d}, 0.1);
      block.ls2_gamma = at::full({d}, 0.1);
    }
    if (config.rel_pos_bias) block.rel_pos_bias_table = normal(bias_table);
    block.norm2_weight = ones(d);
    block.norm2_bias = zeros(d);
    block.fc1_weight = normal({hidden, d});
    block.fc1_bias = zeros(hidden);
    block.fc2_weight = normal({d, hidden});
    block.fc2_bias = zeros(d);
    weights.blocks.push_back(std::move(block));
  }
  if (config.final_norm) {
    weights.norm_weight = ones(d);
    weights.norm_bias = zeros(d);
  }
  return weights;
}

}  // namespace vitprobe
