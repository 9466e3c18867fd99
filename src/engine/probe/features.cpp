#include "probe/features.h"

#include <ATen/ATen.h>

#include "common/errors.h"

namespace vitprobe {
namespace {

// Official cpN / caN window: start c - ceil(n/2), end c + floor(n/2) (exclusive), c = grid / 2.
std::pair<int, int> central_window(int grid, int n) {
  const int center = grid / 2;
  const int start = center - (n + 1) / 2;
  return {start, start + n};
}

at::Tensor patch_tokens(const at::Tensor& tokens, const TokenLayout& layout) {
  return tokens.slice(1, layout.num_prefix_tokens);
}

// Sum over patches of weights (B, N) times patch tokens (B, N, D).
at::Tensor weighted_patch_sum(const at::Tensor& weights, const at::Tensor& patches) {
  return at::bmm(weights.unsqueeze(1), patches).squeeze(1);
}

void check_attention(const at::Tensor& attention, const TokenLayout& layout, const char* what) {
  if (!attention.defined() || attention.dim() != 4 || attention.size(2) != layout.num_tokens() ||
      attention.size(3) != layout.num_tokens()) {
    throw BadInput(std::string(what) + ": needs the probed block's attention (B, heads, " +
                   std::to_string(layout.num_tokens()) + ", " + std::to_string(layout.num_tokens()) + ")");
  }
}

}  // namespace

void add_patch_tokens(FeatureMap& features, const TokenLayout& layout) {
  const auto found = features.find("tokens");
  if (found == features.end() || features.count("patches")) return;
  features["patches"] = found->second.slice(1, layout.num_prefix_tokens).contiguous();
}

TokenLayout TokenLayout::of(const VitConfig& config) {
  TokenLayout layout;
  layout.embed_dim = config.embed_dim;
  layout.num_prefix_tokens = config.num_prefix_tokens();
  layout.class_token = config.class_token;
  layout.grid_size = config.grid_size();
  layout.num_encoder_heads = config.num_heads;
  return layout;
}

std::vector<std::string> required_features(const HeadSpec& spec) {
  switch (spec.kind) {
    case HeadKind::Cls: return {"cls"};
    case HeadKind::Mean: return {"mean"};
    case HeadKind::ClsMean: return {"cls", "mean"};
    case HeadKind::Center: return {"center:" + std::to_string(spec.size)};
    case HeadKind::CenterAttention: return {"cattn:" + std::to_string(spec.size)};
    case HeadKind::AttentionMean: return {"attn-mean"};
    case HeadKind::AttentionMinEntropy: return {"attn-minent"};
    case HeadKind::Knn:
      if (spec.knn_feature == "cls+mean") return {"cls", "mean"};
      return {spec.knn_feature};
    case HeadKind::Dino: return {"dino"};
    default: return {"tokens"};
  }
}

std::set<std::string> required_features(const std::vector<HeadSpec>& specs) {
  std::set<std::string> names;
  for (const auto& spec : specs) {
    for (const auto& name : required_features(spec)) names.insert(name);
  }
  return names;
}

bool needs_attention(const std::set<std::string>& features) {
  for (const auto& name : features) {
    if (name.rfind("cattn:", 0) == 0 || name == "attn-mean" || name == "attn-minent") return true;
  }
  return false;
}

bool needs_oracle(const std::set<std::string>& features) { return features.count("dino") > 0; }

void check_oracle_fits(const VitConfig& oracle, const VitConfig& encoder, const std::string& file) {
  if (!oracle.class_token) {
    throw BadInput("--oracle-model " + file + ": the oracle has no [cls] token (the dino head weights patches by "
                   "the oracle's [cls] attention)");
  }
  if (oracle.img_size != encoder.img_size || oracle.grid_size() != encoder.grid_size()) {
    const auto describe = [](const VitConfig& config) {
      return std::to_string(config.grid_size()) + "x" + std::to_string(config.grid_size()) + " (" +
             std::to_string(config.img_size) + " px, patch " + std::to_string(config.patch_size) + ")";
    };
    throw BadInput("--oracle-model " + file + ": the oracle's patch grid " + describe(oracle) +
                   " differs from the encoder's " + describe(encoder) + " (it must see the same images)");
  }
}

void check_head_fits(const HeadSpec& spec, const TokenLayout& layout) {
  const bool reads_cls = spec.kind == HeadKind::Cls || spec.kind == HeadKind::ClsMean ||
                         spec.kind == HeadKind::AttentionMean || spec.kind == HeadKind::AttentionMinEntropy ||
                         (spec.kind == HeadKind::Knn && spec.knn_feature != "mean") ||
                         (spec.kind == HeadKind::EfficientProbing && spec.content == "all");
  if (reads_cls && !layout.class_token) {
    throw BadInput("head '" + spec.name + "' needs a [cls] token, which this encoder does not have");
  }
  if ((spec.kind == HeadKind::Center || spec.kind == HeadKind::CenterAttention) && spec.size > layout.grid_size) {
    throw BadInput("head '" + spec.name + "': the central window is larger than the " +
                   std::to_string(layout.grid_size) + "x" + std::to_string(layout.grid_size) + " patch grid");
  }
  // EP splits v = Linear(D, D / d_out) into M equal chunks (poolings/ep.py: reshape to C // (d_out * M)).
  if (spec.kind == HeadKind::EfficientProbing && layout.embed_dim % (int64_t{spec.size} * spec.d_out) != 0) {
    throw BadInput("head '" + spec.name + "': the width " + std::to_string(layout.embed_dim) +
                   " is not divisible by the number of queries " + std::to_string(spec.size) +
                   (spec.d_out == 1 ? "" : " times d_out " + std::to_string(spec.d_out)));
  }
  if ((spec.kind == HeadKind::Aim || spec.kind == HeadKind::VJepa) && layout.embed_dim % spec.heads != 0) {
    throw BadInput("head '" + spec.name + "': the width " + std::to_string(layout.embed_dim) +
                   " is not divisible by heads=" + std::to_string(spec.heads));
  }
}

at::Tensor center_weights(const TokenLayout& layout, int n) {
  const int grid = layout.grid_size;
  if (n < 1 || n > grid) {
    throw BadInput("center:" + std::to_string(n) + ": window larger than the " + std::to_string(grid) + "x" +
                   std::to_string(grid) + " patch grid");
  }
  const auto [start, end] = central_window(grid, n);
  auto mask = at::zeros({grid, grid}, at::kFloat);
  mask.slice(0, start, end).slice(1, start, end).fill_(1.0 / (n * n));
  return mask.reshape({grid * grid});
}

at::Tensor central_attention_weights(const at::Tensor& attention, const TokenLayout& layout, int n) {
  check_attention(attention, layout, "cattn");
  const int grid = layout.grid_size;
  const int prefix = layout.num_prefix_tokens;
  const auto [start, end] = central_window(grid, n);
  const auto batch = attention.size(0);
  // (B, T, T) averaged over heads -> patch queries x patch keys, queries as a grid.
  const auto mean_heads = attention.to(at::kFloat).mean(1);
  const auto patch_to_patch = mean_heads.slice(1, prefix).slice(2, prefix).reshape({batch, grid, grid, grid * grid});
  auto weights = patch_to_patch.slice(1, start, end).slice(2, start, end).mean({1, 2});
  return weights / (weights.sum(1, true) + 1e-6);
}

at::Tensor cls_attention_mean_weights(const at::Tensor& attention, const TokenLayout& layout) {
  check_attention(attention, layout, "attn-mean");
  if (!layout.class_token) throw BadInput("attn-mean: the encoder has no [cls] token");
  const auto cls_to_patches = attention.to(at::kFloat).select(2, 0).slice(2, layout.num_prefix_tokens);
  const auto weights = cls_to_patches.mean(1);
  return weights / weights.sum(1, true);
}

at::Tensor cls_attention_min_entropy_weights(const at::Tensor& attention, const TokenLayout& layout) {
  check_attention(attention, layout, "attn-minent");
  if (!layout.class_token) throw BadInput("attn-minent: the encoder has no [cls] token");
  const auto cls_to_patches = attention.to(at::kFloat).select(2, 0).slice(2, layout.num_prefix_tokens);  // (B, H, N)
  const auto renormalised = cls_to_patches / (cls_to_patches.sum(2, true) + 1e-6);
  const auto entropy = -(renormalised * (renormalised + 1e-6).log()).sum(2);  // (B, H)
  const auto head = entropy.argmin(1);                                        // (B)
  const auto index = head.view({-1, 1, 1}).expand({-1, 1, cls_to_patches.size(2)});
  const auto weights = cls_to_patches.gather(1, index).squeeze(1);
  return weights / weights.sum(1, true);
}

at::Tensor oracle_cls_attention(const at::Tensor& attention, const TokenLayout& oracle_layout) {
  if (!oracle_layout.class_token) throw BadInput("dino: the oracle has no [cls] token");
  if (!attention.defined() || attention.dim() != 4 || attention.size(2) != oracle_layout.num_tokens() ||
      attention.size(3) != oracle_layout.num_tokens()) {
    throw BadInput("dino: needs the oracle's last-block attention (B, heads, " + std::to_string(oracle_layout.num_tokens()) +
                   ", " + std::to_string(oracle_layout.num_tokens()) + ")");
  }
  // beyond_cls models_vit.py:343-345: d_attn[:, :, 0, 1:] of the oracle's last block; the head mean is taken
  // by the .mean(dim=[1, 2]) that follows, here first (the same sum).
  return attention.to(at::kFloat).select(2, 0).slice(2, oracle_layout.num_prefix_tokens).mean(1);
}

FeatureMap compute_features(const at::Tensor& tokens_in, const at::Tensor& attention, const TokenLayout& layout,
                            const std::set<std::string>& names, const at::Tensor& oracle_weights) {
  const auto tokens = tokens_in.to(at::kFloat);
  if (tokens.dim() != 3 || tokens.size(1) != layout.num_tokens() || tokens.size(2) != layout.embed_dim) {
    throw BadInput("compute_features: tokens must be (B, " + std::to_string(layout.num_tokens()) + ", " +
                   std::to_string(layout.embed_dim) + ")");
  }
  const auto patches = patch_tokens(tokens, layout);
  FeatureMap features;
  for (const auto& name : names) {
    if (name == "tokens") {
      features[name] = tokens.contiguous();
    } else if (name == "cls") {
      if (!layout.class_token) throw BadInput("feature 'cls': the encoder has no [cls] token");
      features[name] = tokens.select(1, 0).contiguous();
    } else if (name == "mean") {
      features[name] = patches.mean(1);
    } else if (name.rfind("center:", 0) == 0) {
      const auto weights = center_weights(layout, std::stoi(name.substr(7))).to(tokens.device());
      features[name] = at::matmul(weights, patches);
    } else if (name.rfind("cattn:", 0) == 0) {
      features[name] = weighted_patch_sum(central_attention_weights(attention, layout, std::stoi(name.substr(6))), patches);
    } else if (name == "attn-mean") {
      features[name] = weighted_patch_sum(cls_attention_mean_weights(attention, layout), patches);
    } else if (name == "attn-minent") {
      features[name] = weighted_patch_sum(cls_attention_min_entropy_weights(attention, layout), patches);
    } else if (name == "dino") {
      if (!oracle_weights.defined() || oracle_weights.dim() != 2 || oracle_weights.size(0) != tokens.size(0) ||
          oracle_weights.size(1) != layout.num_patches()) {
        throw BadInput("feature 'dino': needs the oracle's [cls] attention to the " +
                       std::to_string(layout.num_patches()) + " patches of each image (--oracle-model)");
      }
      // beyond_cls models_vit.py:347-350: (fm.unsqueeze(1) * d_attn).mean(dim=[1, 2]) = (1/(H N)) sum_h,n a_hn x_n.
      const auto weights = oracle_weights.to(tokens.device(), at::kFloat) / static_cast<double>(layout.num_patches());
      features[name] = weighted_patch_sum(weights, patches);
    } else {
      throw BadInput("compute_features: unknown feature '" + name + "'");
    }
  }
  return features;
}

}  // namespace vitprobe
