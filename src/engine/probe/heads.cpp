#include "probe/heads.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/errors.h"
#include "data/random.h"

namespace vitprobe {

namespace {

constexpr double kBatchNormMomentum = 0.1, kBatchNormEps = 1e-6;  // torch.nn.BatchNorm1d(eps=1e-6) of MAE's head

// Seeds of the two independent draws of a head (the pooling, the linear layer).
constexpr uint64_t kPoolingSeedStream = 11, kLinearSeedStream = 12;

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ")";
  return out.str();
}

const at::Tensor& feature(const FeatureMap& features, const std::string& name, const HeadSpec& spec) {
  const auto found = features.find(name);
  if (found == features.end()) throw BadInput("head '" + spec.name + "': feature '" + name + "' missing from the batch");
  return found->second;
}

}  // namespace

ClassifierInit parse_classifier_init(const std::string& name) {
  if (name == "pytorch") return ClassifierInit::PyTorch;
  if (name == "mae") return ClassifierInit::Mae;
  throw BadInput("--head-init '" + name + "': expected pytorch or mae");
}

ProbeHead::ProbeHead(HeadSpec spec, TokenLayout layout, int64_t num_classes, uint64_t seed, const at::Device& device,
                     ClassifierInit init)
    : spec_(std::move(spec)), layout_(layout), num_classes_(num_classes) {
  if (!spec_.trainable()) throw BadInput("head '" + spec_.name + "' has nothing to train");
  if (num_classes_ < 2) throw BadInput("head '" + spec_.name + "': needs at least 2 classes, got " + std::to_string(num_classes_));
  check_head_fits(spec_, layout_);
  if (spec_.learned_pooling()) {
    pooling_ = make_learned_pooling(spec_, layout_, derive_seed(seed, kPoolingSeedStream), device);
    feature_dim_ = pooling_->output_dim();
  } else {
    feature_dim_ = spec_.kind == HeadKind::ClsMean ? 2 * layout_.embed_dim : layout_.embed_dim;
  }
  const auto options = at::TensorOptions().dtype(at::kFloat).device(device);
  auto generator = at::detail::createCPUGenerator(derive_seed(seed, kLinearSeedStream));
  if (init == ClassifierInit::Mae) {
    // timm's trunc_normal_(std=0.01) truncates at +-2 (absolute), i.e. 200 standard deviations: a plain normal.
    linear_weight_ = at::empty({num_classes_, feature_dim_}, at::kFloat).normal_(0.0, 0.01, generator).to(device);
    linear_bias_ = at::zeros({num_classes_}, options);
  } else {
    // nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) has bound gain * sqrt(3 / fan_in) with
    // gain = sqrt(2 / (1 + 5)), i.e. 1 / sqrt(fan_in); the bias is drawn after the weight with the same bound.
    const double bound = 1.0 / std::sqrt(static_cast<double>(feature_dim_));
    linear_weight_ = at::empty({num_classes_, feature_dim_}, at::kFloat).uniform_(-bound, bound, generator).to(device);
    linear_bias_ = at::empty({num_classes_}, at::kFloat).uniform_(-bound, bound, generator).to(device);
  }
  running_mean_ = at::zeros({feature_dim_}, options);
  running_var_ = at::ones({feature_dim_}, options);
  for (auto& [name, tensor] : parameters()) tensor.requires_grad_(true);
}

at::Tensor ProbeHead::pool(const FeatureMap& features, bool training) const {
  if (pooling_) {
    const auto& tokens = feature(features, "tokens", spec_);
    const auto found = features.find("patches");
    return pooling_->forward(tokens,
                             found != features.end() ? found->second : tokens.slice(1, layout_.num_prefix_tokens).contiguous(),
                             training);
  }
  const auto names = required_features(spec_);
  if (names.size() == 1) return feature(features, names.front(), spec_);
  std::vector<at::Tensor> parts;
  for (const auto& name : names) parts.push_back(feature(features, name, spec_));
  return at::cat(parts, 1);
}

at::Tensor ProbeHead::forward(const FeatureMap& features, bool training) {
  const auto pooled = pool(features, training);
  const auto normalised = at::batch_norm(pooled, {}, {}, running_mean_, running_var_, training, kBatchNormMomentum,
                                         kBatchNormEps, false);
  return at::linear(normalised, linear_weight_, linear_bias_);
}

at::Tensor ProbeHead::classify(const at::Tensor& pooled, const at::Tensor& mean, const at::Tensor& variance, double count) {
  const auto normalised = ((pooled.to(mean.scalar_type()) - mean) * at::rsqrt(variance + kBatchNormEps)).to(pooled.scalar_type());
  {
    at::NoGradGuard no_grad;
    const auto unbiased = variance.detach() * (count / std::max(1.0, count - 1));
    running_mean_.mul_(1 - kBatchNormMomentum).add_(mean.detach().to(running_mean_.scalar_type()), kBatchNormMomentum);
    running_var_.mul_(1 - kBatchNormMomentum).add_(unbiased.to(running_var_.scalar_type()), kBatchNormMomentum);
  }
  return at::linear(normalised, linear_weight_, linear_bias_);
}

std::vector<at::Tensor> forward_synchronised(const std::vector<ProbeHead*>& heads, const FeatureMap& features,
                                             Communicator& communicator) {
  std::vector<at::Tensor> pooled, parts;
  int64_t items = -1;
  for (auto* head : heads) {
    // A pooling's own BatchNorm (aim) uses this rank's batch, as the EP repository, which has no SyncBatchNorm.
    pooled.push_back(head->pool(features, true));
    const auto wide = pooled.back().to(at::kDouble);
    parts.push_back(wide.sum(0));
    parts.push_back((wide * wide).sum(0));
    items = pooled.back().size(0);
  }
  if (heads.empty()) return {};
  parts.push_back(at::full({1}, static_cast<double>(items), at::kDouble));
  const auto totals = differentiable_all_reduce_sum(at::cat(parts), communicator);
  const double count = totals[-1].item<double>();
  std::vector<at::Tensor> logits;
  int64_t offset = 0;
  for (size_t i = 0; i < heads.size(); ++i) {
    const int64_t width = pooled[i].size(1);
    const auto mean = totals.narrow(0, offset, width) / count;
    const auto variance = (totals.narrow(0, offset + width, width) / count - mean * mean).clamp_min(0);
    offset += 2 * width;
    logits.push_back(heads[i]->classify(pooled[i], mean, variance, count));
  }
  return logits;
}

std::vector<NamedTensor> ProbeHead::parameters() const {
  std::vector<NamedTensor> named;
  if (pooling_) named = pooling_->parameters();
  named.emplace_back("linear.weight", linear_weight_);
  named.emplace_back("linear.bias", linear_bias_);
  return named;
}

std::vector<NamedTensor> ProbeHead::buffers() const {
  std::vector<NamedTensor> named;
  if (pooling_) named = pooling_->buffers();
  named.emplace_back("bn.running_mean", running_mean_);
  named.emplace_back("bn.running_var", running_var_);
  return named;
}

std::vector<NamedTensor> ProbeHead::state() const {
  auto named = parameters();
  for (auto& item : buffers()) named.push_back(std::move(item));
  return named;
}

void ProbeHead::load_state(const std::map<std::string, at::Tensor>& tensors, const std::string& source) {
  const auto own = state();
  for (const auto& [name, tensor] : tensors) {
    const bool known = std::any_of(own.begin(), own.end(), [&](const NamedTensor& item) { return item.first == name; });
    if (!known) throw BadInput(source + ": unexpected tensor '" + name + "' for head '" + spec_.name + "'");
  }
  at::NoGradGuard no_grad;
  for (const auto& [name, target] : own) {
    const auto found = tensors.find(name);
    // Heads saved before the table was trained (issue 16) used the fixed sin-cos table, which is what a fresh
    // head holds: keep it.
    if (found == tensors.end() && name == "pool.pos_embed" && spec_.kind == HeadKind::Abmilp) continue;
    if (found == tensors.end()) throw BadInput(source + ": missing tensor '" + name + "' of head '" + spec_.name + "'");
    if (found->second.sizes() != target.sizes()) {
      throw BadInput(source + ": tensor '" + name + "' has shape " + shape_text(found->second.sizes()) + ", head '" +
                     spec_.name + "' expects " + shape_text(target.sizes()));
    }
    // The handles are shared with the optimizer: copy in place.
    at::Tensor(target).copy_(found->second.to(target.device(), at::kFloat));
  }
}

int64_t ProbeHead::num_trainable_parameters() const {
  int64_t count = 0;
  for (const auto& [name, tensor] : parameters()) count += tensor.numel();
  return count;
}

at::Tensor pooling_weights(const ProbeHead& head, const at::Tensor& tokens_in, const at::Tensor& attention) {
  at::NoGradGuard no_grad;
  const auto& spec = head.spec();
  const auto& layout = head.layout();
  const auto tokens = tokens_in.to(at::kFloat);
  if (tokens.dim() != 3 || tokens.size(2) != layout.embed_dim ||
      (tokens.size(1) != layout.num_tokens() && tokens.size(1) != layout.num_patches())) {
    throw BadInput("pooling_weights: head '" + spec.name + "' expects tokens (B, " + std::to_string(layout.num_tokens()) +
                   " or " + std::to_string(layout.num_patches()) + ", " + std::to_string(layout.embed_dim) + "), got " +
                   shape_text(tokens.sizes()));
  }
  const int64_t batch = tokens.size(0);
  switch (spec.kind) {
    case HeadKind::Mean:
      return at::full({batch, layout.num_patches()}, 1.0 / layout.num_patches(), tokens.options());
    case HeadKind::Center:
      return center_weights(layout, spec.size).to(tokens.device()).unsqueeze(0).expand({batch, -1}).contiguous();
    case HeadKind::CenterAttention: return central_attention_weights(attention, layout, spec.size);
    case HeadKind::AttentionMean: return cls_attention_mean_weights(attention, layout);
    case HeadKind::AttentionMinEntropy: return cls_attention_min_entropy_weights(attention, layout);
    case HeadKind::Dino:
      throw BadInput("pooling_weights: head '" + spec.name + "' weights the patches by its oracle's [cls] attention "
                     "(oracle_cls_attention of the oracle's last block), not by anything of this encoder");
    default: break;
  }
  if (!head.learned_pooling()) throw BadInput("pooling_weights: head '" + spec.name + "' weights no patches");
  if (tokens.size(1) == layout.num_tokens()) {
    return head.learned_pooling()->pooling_weights(tokens, tokens.slice(1, layout.num_prefix_tokens).contiguous());
  }
  // Patch tokens only: the prefix slots are never read by these heads except abmilp content=all and ep_all.
  if (spec.reads_prefix_tokens() && layout.num_prefix_tokens > 0) {
    throw BadInput("pooling_weights: head '" + spec.name + "' reads the prefix tokens; pass all tokens (B, " +
                   std::to_string(layout.num_tokens()) + ", D)");
  }
  const auto padded = at::cat({at::zeros({batch, layout.num_prefix_tokens, layout.embed_dim}, tokens.options()), tokens}, 1);
  return head.learned_pooling()->pooling_weights(padded, tokens.contiguous());
}

}  // namespace vitprobe
