#include "probe/feature_source.h"

#include <ATen/ATen.h>

#include "common/errors.h"

namespace vitprobe {

at::Tensor oracle_weights(const VitEncoder& oracle, const at::Tensor& images) {
  const auto& config = oracle.config();
  ForwardRequest request;
  request.final_tokens = false;
  request.attention_blocks = {config.depth - 1};  // the last block (models_vit.py:343, return_block = depth - 1)
  const auto device_images = images.to(oracle.weights().patch_weight.device(), /*non_blocking=*/true);
  const auto result = oracle.forward(device_images, request);  // runs without autograd
  return oracle_cls_attention(result.attention.at(config.depth - 1), TokenLayout::of(config));
}

FeatureExtractor::FeatureExtractor(std::shared_ptr<const VitEncoder> encoder, int block, bool final_norm,
                                   std::set<std::string> names, std::shared_ptr<const VitEncoder> oracle)
    : encoder_(std::move(encoder)), final_norm_(final_norm), names_(std::move(names)), oracle_(std::move(oracle)) {
  const auto& config = encoder_->config();
  block_ = block < 0 ? config.depth + block : block;
  if (block_ < 0 || block_ >= config.depth) {
    throw BadInput("--block " + std::to_string(block) + " out of range (the model has " + std::to_string(config.depth) +
                   " blocks, 0.." + std::to_string(config.depth - 1) + " or -1..-" + std::to_string(config.depth) + ")");
  }
  layout_ = TokenLayout::of(config);
  if (needs_oracle(names_)) {
    if (!oracle_) throw BadInput("head 'dino' needs --oracle-model CKPT (the encoder whose [cls] attention weights the patches)");
    check_oracle_fits(oracle_->config(), config, "(oracle)");
  }
}

FeatureMap FeatureExtractor::operator()(const at::Tensor& images) const {
  const auto& config = encoder_->config();
  ForwardRequest request;
  request.final_tokens = false;
  request.block_outputs = {block_};
  if (needs_attention(names_)) request.attention_blocks = {block_};
  // Non-blocking from the loader's pinned batches in CUDA runs; the encoder casts to its dtype on the device.
  const auto device_images = images.to(encoder_->weights().patch_weight.device(), /*non_blocking=*/true);
  const auto result = encoder_->forward(device_images, request);
  auto tokens = result.block_outputs.at(block_);
  if (final_norm_ && config.final_norm) {
    const auto& weights = encoder_->weights();
    tokens = at::layer_norm(tokens, {config.embed_dim}, weights.norm_weight, weights.norm_bias, config.norm_eps);
  }
  const auto found = result.attention.find(block_);
  const at::Tensor attention = found == result.attention.end() ? at::Tensor() : found->second;
  const at::Tensor oracle = needs_oracle(names_) ? oracle_weights(*oracle_, images) : at::Tensor();
  return compute_features(tokens, attention, layout_, names_, oracle);
}

OnlineFeatures::OnlineFeatures(const Dataset& dataset, ImageTransform transform, LoaderOptions options,
                               const FeatureExtractor& extractor)
    : loader_(dataset, std::move(transform), options), extractor_(extractor) {}

std::optional<FeatureBatch> OnlineFeatures::next() {
  auto batch = loader_.next();
  if (!batch) return std::nullopt;
  FeatureBatch features;
  features.features = extractor_(batch->images);
  const auto device = features.features.empty() ? at::Device(at::kCPU) : features.features.begin()->second.device();
  features.labels = batch->labels.to(device);
  features.indices = batch->indices;
  return features;
}

}  // namespace vitprobe
