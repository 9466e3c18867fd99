#include "model/vit_encoder.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

#include "common/errors.h"
#include "model/fast_path.h"
#include "model/pos_embed.h"

namespace vitprobe {

void visit_block_weights(BlockWeights& block, const std::string& prefix,
                         const std::function<void(const std::string&, at::Tensor&)>& fn) {
  fn(prefix + "norm1.weight", block.norm1_weight);
  fn(prefix + "norm1.bias", block.norm1_bias);
  fn(prefix + "attn.qkv.weight", block.qkv_weight);
  fn(prefix + "attn.qkv.bias", block.qkv_bias);
  fn(prefix + "attn.proj.weight", block.proj_weight);
  fn(prefix + "attn.proj.bias", block.proj_bias);
  fn(prefix + "ls1.gamma", block.ls1_gamma);
  fn(prefix + "ls2.gamma", block.ls2_gamma);
  fn(prefix + "attn.relative_position_bias_table", block.rel_pos_bias_table);
  fn(prefix + "norm2.weight", block.norm2_weight);
  fn(prefix + "norm2.bias", block.norm2_bias);
  fn(prefix + "mlp.fc1.weight", block.fc1_weight);
  fn(prefix + "mlp.fc1.bias", block.fc1_bias);
  fn(prefix + "mlp.fc2.weight", block.fc2_weight);
  fn(prefix + "mlp.fc2.bias", block.fc2_bias);
}

void visit_weights(VitWeights& weights, const std::function<void(const std::string&, at::Tensor&)>& fn) {
  fn("patch_embed.proj.weight", weights.patch_weight);
  fn("patch_embed.proj.bias", weights.patch_bias);
  fn("cls_token", weights.cls_token);
  fn("reg_token", weights.reg_token);
  fn("pos_embed", weights.pos_embed);
  fn("rel_pos_bias.relative_position_bias_table", weights.rel_pos_bias_table);
  for (size_t i = 0; i < weights.blocks.size(); ++i) visit_block_weights(weights.blocks[i], "blocks." + std::to_string(i) + ".", fn);
  fn("norm.weight", weights.norm_weight);
  fn("norm.bias", weights.norm_bias);
}

namespace {

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ")";
  return out.str();
}

// The shape each timm key must have under `config`; empty optional = the slot must stay undefined.
std::map<std::string, std::vector<int64_t>> expected_shapes(const VitConfig& config) {
  const int64_t d = config.embed_dim;
  const int64_t hidden = config.mlp_hidden_dim;
  std::map<std::string, std::vector<int64_t>> shapes;
  shapes["patch_embed.proj.weight"] = {d, config.in_chans, config.patch_size, config.patch_size};
  shapes["patch_embed.proj.bias"] = {d};
  if (config.class_token) shapes["cls_token"] = {1, 1, d};
  if (config.num_registers > 0) shapes["reg_token"] = {1, config.num_registers, d};
  const int64_t pos_rows = config.num_patches() + (config.class_token && config.pos_embed_has_cls_slot ? 1 : 0);
  if (config.pos_embed != PosEmbedKind::None) shapes["pos_embed"] = {1, pos_rows, d};
  const std::vector<int64_t> bias_table = {config.num_relative_distances(), config.num_heads};
  if (config.shared_rel_pos_bias) shapes["rel_pos_bias.relative_position_bias_table"] = bias_table;
  for (int i = 0; i < config.depth; ++i) {
    const std::string prefix = "blocks." + std::to_string(i) + ".";
    for (const char* norm : {"norm1", "norm2"}) {
      shapes[prefix + norm + ".weight"] = {d};
      shapes[prefix + norm + ".bias"] = {d};
    }
    shapes[prefix + "attn.qkv.weight"] = {3 * d, d};
    if (config.qkv_bias) shapes[prefix + "attn.qkv.bias"] = {3 * d};
    shapes[prefix + "attn.proj.weight"] = {d, d};
    shapes[prefix + "attn.proj.bias"] = {d};
    if (config.layer_scale) {
      shapes[prefix + "ls1.gamma"] = {d};
      shapes[prefix + "ls2.gamma"] = {d};
    }
    if (config.rel_pos_bias) shapes[prefix + "attn.relative_position_bias_table"] = bias_table;
    shapes[prefix + "mlp.fc1.weight"] = {hidden, d};
    shapes[prefix + "mlp.fc1.bias"] = {hidden};
    shapes[prefix + "mlp.fc2.weight"] = {d, hidden};
    shapes[prefix + "mlp.fc2.bias"] = {d};
  }
  if (config.final_norm) {
    shapes["norm.weight"] = {d};
    shapes["norm.bias"] = {d};
  }
  return shapes;
}

bool wanted(const std::vector<int>& blocks, int block) {
  return std::find(blocks.begin(), blocks.end(), block) != blocks.end();
}

}  // namespace

void check_weight_shapes(const VitConfig& config, const VitWeights& weights) {
  config.validate();
  if (static_cast<int>(weights.blocks.size()) != config.depth) {
    throw BadInput("weights have " + std::to_string(weights.blocks.size()) + " blocks, the configuration " +
                   std::to_string(config.depth));
  }
  const auto shapes = expected_shapes(config);
  auto copy = weights;
  visit_weights(copy, [&](const std::string& key, at::Tensor& tensor) {
    const auto expected = shapes.find(key);
    if (expected == shapes.end()) {
      if (tensor.defined()) throw BadInput("unexpected tensor '" + key + "' for this configuration");
      return;
    }
    if (!tensor.defined()) throw BadInput("missing tensor '" + key + "'");
    if (tensor.sizes() != at::IntArrayRef(expected->second)) {
      throw BadInput("tensor '" + key + "' has shape " + shape_text(tensor.sizes()) + ", expected " +
                     shape_text(expected->second));
    }
  });
}

EncoderBackend parse_backend(const std::string& name) {
  if (name == "auto") return EncoderBackend::Auto;
  if (name == "reference") return EncoderBackend::Reference;
  if (name == "fast") return EncoderBackend::Fast;
  throw BadInput("unknown backend '" + name + "' (expected auto, reference or fast)");
}

std::string VitEncoder::backend_name() const { return fast_ ? "fast" : "reference"; }

namespace {

// Under autocast-style bf16 (CUDA), the tensors that feed matrix products: patch embedding and linear layers.
bool is_product_weight(const std::string& key) {
  for (const char* part : {"patch_embed.", ".attn.qkv.", ".attn.proj.", ".mlp.fc1.", ".mlp.fc2."}) {
    if (key.find(part) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

VitEncoder::VitEncoder(VitConfig config, VitWeights weights, at::ScalarType dtype, EncoderBackend backend)
    : config_(std::move(config)), weights_(std::move(weights)), dtype_(dtype) {
  check_weight_shapes(config_, weights_);
  // bf16 on CUDA is split as PyTorch's autocast splits it: matrix products (and their weights) in bf16, the
  // residual stream, LayerNorm, position embeddings and LayerScale in fp32. Elsewhere one dtype for everything.
  mixed_ = dtype_ == at::kBFloat16 && weights_.patch_weight.is_cuda();
  // Convert once here, so a forward never casts weights. Relative position tables stay fp32: they are added
  // to fp32 logits.
  visit_weights(weights_, [&](const std::string& key, at::Tensor& tensor) {
    if (!tensor.defined()) return;
    const bool fp32 = (mixed_ && !is_product_weight(key)) || key.find("relative_position_bias_table") != std::string::npos;
    tensor = tensor.to(fp32 ? at::kFloat : dtype_).contiguous();
  });
  // The patch embedding runs as one matrix product over unfolded patches (any dtype, no conv kernel needed).
  patch_matrix_ = weights_.patch_weight.reshape({config_.embed_dim, -1}).contiguous();
  // Relative position bias, expanded once per block to (heads, T, T) in fp32: it is added to the fp32 logits
  // (under PyTorch's autocast too, the fp32 table promotes the half-precision logits before the softmax).
  if (config_.has_relative_position_bias()) {
    const int grid = config_.grid_size();
    at::Tensor shared;
    if (config_.shared_rel_pos_bias) {
      shared = relative_position_bias(weights_.rel_pos_bias_table.to(at::kFloat), grid,
                                      "rel_pos_bias.relative_position_bias_table");
    }
    for (int i = 0; i < config_.depth; ++i) {
      at::Tensor bias;
      if (config_.rel_pos_bias) {
        bias = relative_position_bias(weights_.blocks[i].rel_pos_bias_table.to(at::kFloat), grid,
                                      "blocks." + std::to_string(i) + ".attn.relative_position_bias_table");
      }
      if (shared.defined()) bias = bias.defined() ? bias + shared : shared;
      attention_biases_.push_back(bias.contiguous());
    }
  }
  if (backend == EncoderBackend::Fast && !onednn_available()) {
    throw BadInput("the fast backend needs oneDNN, which this build lacks (use --backend reference)");
  }
  if (backend == EncoderBackend::Fast && !patch_matrix_.device().is_cpu()) {
    throw BadInput("the fast backend runs on the CPU only (use --backend auto or reference with --device cuda)");
  }
  if (backend != EncoderBackend::Reference && onednn_available() && patch_matrix_.device().is_cpu()) {
    fast_ = std::make_shared<const FastEncoderPath>(config_, weights_, dtype_, attention_biases_);
  }
}

const at::Tensor& VitEncoder::attention_bias(int block) const {
  static const at::Tensor none;
  return attention_biases_.empty() ? none : attention_biases_.at(static_cast<size_t>(block));
}

VitWeights weights_on(VitWeights weights, const at::Device& device) {
  visit_weights(weights, [&](const std::string&, at::Tensor& tensor) {
    if (tensor.defined()) tensor = tensor.to(device);
  });
  return weights;
}

at::Tensor embed_patches(const at::Tensor& images, const at::Tensor& patch_matrix, const at::Tensor& patch_bias,
                         int patch_size) {
  const int64_t batch = images.size(0);
  const int64_t channels = images.size(1);
  const int64_t grid_h = images.size(2) / patch_size;
  const int64_t grid_w = images.size(3) / patch_size;
  // (B, C, h, P, w, P) -> (B, h, w, C, P, P): row-major patches, each flattened in conv-weight order, so the
  // convolution becomes one matrix product (any dtype, no conv kernel needed).
  auto patches = images.reshape({batch, channels, grid_h, patch_size, grid_w, patch_size})
                     .permute({0, 2, 4, 1, 3, 5})
                     .reshape({batch * grid_h * grid_w, -1});
  return at::addmm(patch_bias, patches, patch_matrix.t()).view({batch, grid_h * grid_w, patch_matrix.size(0)});
}

namespace {

// A linear layer whose input is cast to the weight's dtype first: a no-op when both share one dtype; under the
// autocast-style split the fp32 LayerNorm output enters a bf16 product, as autocast casts it.
at::Tensor product(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias) {
  return at::linear(input.scalar_type() == weight.scalar_type() ? input : input.to(weight.scalar_type()), weight, bias);
}

}  // namespace

at::Tensor run_block(const BlockWeights& block, const VitConfig& config, const at::Tensor& x, BlockCapture* capture,
                     const at::Tensor& attention_bias) {
  const int64_t batch = x.size(0);
  const int64_t tokens = x.size(1);
  const int64_t dim = config.embed_dim;
  const int64_t heads = config.num_heads;
  const int64_t head_dim = config.head_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  auto y = at::layer_norm(x, {dim}, block.norm1_weight, block.norm1_bias, config.norm_eps);
  auto qkv = product(y, block.qkv_weight, block.qkv_bias)
                 .view({batch, tokens, 3, heads, head_dim})
                 .permute({2, 0, 3, 1, 4});
  at::Tensor context;
  if (capture != nullptr && capture->want_attention) {
    // Probabilities asked for: an fp32 softmax whatever the compute dtype, as the official statistics code
    // gets them under autocast (softmax runs in fp32 there); the context uses the same probabilities, rounded
    // to the compute dtype. The relative position bias joins the logits in fp32 (SimMIM
    // vision_transformer.py:101-115: attn = q*scale @ k^T + bias, then softmax).
    auto logits = at::matmul(qkv[0] * scale, qkv[1].transpose(-2, -1)).to(at::kFloat);
    if (attention_bias.defined()) logits = logits + attention_bias;
    const auto probabilities = at::softmax(logits, -1, at::kFloat);
    context = at::matmul(probabilities.to(qkv[2].scalar_type()), qkv[2]);
    capture->attention = probabilities;
  } else if (attention_bias.defined()) {
    // libtorch's fused attention with the bias as an additive mask (as timm's Beit passes it), in the
    // compute dtype, broadcast over the batch.
    context = at::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attention_bias.to(qkv[0].scalar_type()));
  } else {
    // No probabilities: libtorch's fused attention (flash / memory-efficient kernels on CUDA), scale 1/sqrt(d).
    context = at::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]);
  }
  context = context.transpose(1, 2).reshape({batch, tokens, dim});
  auto branch = product(context, block.proj_weight, block.proj_bias);
  if (capture != nullptr && capture->want_magnitudes) {
    // The official ratio reads the branch before LayerScale (gmum/beyond_cls models_simmim.py:139-146).
    capture->branch_norm = at::linalg_vector_norm(branch, 2, {-1}, false, at::kFloat);
    capture->residual_norm = at::linalg_vector_norm(x, 2, {-1}, false, at::kFloat);
  }
  if (block.ls1_gamma.defined()) branch = branch * block.ls1_gamma;
  if (capture != nullptr && capture->want_magnitudes) {
    capture->branch_norm_after_layer_scale = block.ls1_gamma.defined()
                                                 ? at::linalg_vector_norm(branch, 2, {-1}, false, at::kFloat)
                                                 : capture->branch_norm;
  }
  auto h = x + branch;
  auto hidden = at::gelu(product(at::layer_norm(h, {dim}, block.norm2_weight, block.norm2_bias, config.norm_eps),
                                 block.fc1_weight, block.fc1_bias));
  auto mlp = product(hidden, block.fc2_weight, block.fc2_bias);
  if (block.ls2_gamma.defined()) mlp = mlp * block.ls2_gamma;
  return h + mlp;
}

at::Tensor VitEncoder::embed(const at::Tensor& images) const {
  const int64_t batch = images.size(0);
  auto x = fast_ ? fast_->embed_patches(images)
                 : embed_patches(images, patch_matrix_, weights_.patch_bias, config_.patch_size);
  if (mixed_) x = x.to(at::kFloat);  // the residual stream is fp32 under the autocast-style split
  const auto& pos = weights_.pos_embed;
  if (config_.pos_embed == PosEmbedKind::None) {
    // BEiT / SimMIM without an absolute position embedding: positions come from the attention bias.
    if (config_.class_token) x = at::cat({weights_.cls_token.expand({batch, 1, config_.embed_dim}), x}, 1);
  } else if (config_.class_token) {
    auto cls = weights_.cls_token.expand({batch, 1, config_.embed_dim});
    if (config_.pos_embed_has_cls_slot) {
      x = at::cat({cls, x}, 1) + pos;
    } else {
      x = at::cat({cls, x + pos}, 1);
    }
  } else {
    x = x + pos;
  }
  if (config_.num_registers > 0) {
    // DINOv2 layout: registers come after [cls] and carry no position.
    auto registers = weights_.reg_token.expand({batch, config_.num_registers, config_.embed_dim});
    const int64_t n_cls = config_.class_token ? 1 : 0;
    x = at::cat({x.narrow(1, 0, n_cls), registers, x.narrow(1, n_cls, x.size(1) - n_cls)}, 1);
  }
  return x;
}

ForwardResult VitEncoder::forward(const at::Tensor& images, const ForwardRequest& request) const {
  at::NoGradGuard no_grad;
  if (images.dim() != 4 || images.size(1) != config_.in_chans || images.size(2) != config_.img_size ||
      images.size(3) != config_.img_size) {
    throw BadInput("forward: input has shape " + shape_text(images.sizes()) + ", the model expects (B, " +
                   std::to_string(config_.in_chans) + ", " + std::to_string(config_.img_size) + ", " +
                   std::to_string(config_.img_size) + ")");
  }
  for (int block : request.block_outputs) {
    if (block < 0 || block >= config_.depth) throw BadInput("forward: no block " + std::to_string(block));
  }
  for (int block : request.attention_blocks) {
    if (block < 0 || block >= config_.depth) throw BadInput("forward: no block " + std::to_string(block));
  }
  int last_needed = config_.depth - 1;
  if (!request.final_tokens && !request.magnitudes) {
    last_needed = -1;
    for (int block : request.block_outputs) last_needed = std::max(last_needed, block);
    for (int block : request.attention_blocks) last_needed = std::max(last_needed, block);
  }

  ForwardResult result;
  // Pinned host batches (the loader pins them for CUDA runs) are copied without blocking the host.
  auto x = embed(images.to(patch_matrix_.device(), /*non_blocking=*/true).to(dtype_));
  for (int index = 0; index <= last_needed; ++index) {
    BlockCapture capture;
    capture.want_attention = wanted(request.attention_blocks, index);
    capture.want_magnitudes = request.magnitudes;
    x = fast_ ? fast_->run_block(index, x, &capture)
              : run_block(weights_.blocks[index], config_, x, &capture, attention_bias(index));
    if (request.magnitudes) {
      result.attention_branch_norms.push_back(capture.branch_norm);
      result.attention_branch_norms_after_layer_scale.push_back(capture.branch_norm_after_layer_scale);
      result.residual_norms.push_back(capture.residual_norm);
    }
    if (capture.want_attention) result.attention[index] = capture.attention;
    if (wanted(request.block_outputs, index)) result.block_outputs[index] = x;
  }
  if (request.final_tokens) {
    result.tokens = config_.final_norm
                        ? at::layer_norm(x, {config_.embed_dim}, weights_.norm_weight, weights_.norm_bias, config_.norm_eps)
                        : x;
  }
  return result;
}

}  // namespace vitprobe
