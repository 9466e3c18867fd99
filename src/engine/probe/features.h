#pragma once
// What the probe heads read from the encoder: the probed block's tokens and, for the attention-weighted
// heads, fixed pooling weights derived from that block's attention. Features are computed in float32 from
// one encoder forward and shared by every head of a run; the same names key the cached feature files.
#include <ATen/core/Tensor.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "model/vit_config.h"
#include "probe/head_spec.h"

namespace vitprobe {

/// Where the tokens sit in the encoder output, and what heads need to know about the encoder.
struct TokenLayout {
  int64_t embed_dim = 0;
  int num_prefix_tokens = 0;  // [cls] (if any) then registers, before the patches
  bool class_token = true;
  int grid_size = 0;          // patches per side; patches are row-major
  int num_encoder_heads = 0;  // attention heads of the encoder's blocks

  int64_t num_patches() const { return static_cast<int64_t>(grid_size) * grid_size; }
  int64_t num_tokens() const { return num_prefix_tokens + num_patches(); }
  /// The layout of an encoder's output.
  static TokenLayout of(const VitConfig& config);
};

/// Named per-image features of a batch, all float32:
///   "tokens"       (B, T, D) every token of the probed block: prefix tokens, then patches
///   "cls"          (B, D)    the [cls] token
///   "mean"         (B, D)    mean of the patch tokens
///   "center:N"     (B, D)    mean of the central NxN patches
///   "cattn:N", "attn-mean", "attn-minent"   (B, D) patches weighted by the fixed attention weights below
///   "dino"         (B, D)    patches weighted by the oracle's [cls] attention (oracle_cls_attention), averaged
///                            over the patches: (1/N) sum_n w_n x_n (official "dino", fm * d_attn .mean([1, 2]))
using FeatureMap = std::map<std::string, at::Tensor>;

/// Adds "patches" (B, N, D), the contiguous patch tokens of "tokens", when "tokens" is present: computed once
/// per batch and shared by every learned pooling (not a stored feature).
void add_patch_tokens(FeatureMap& features, const TokenLayout& layout);

/// One batch of features with labels (B) and dataset indices (B), both int64.
struct FeatureBatch {
  FeatureMap features;
  at::Tensor labels;
  at::Tensor indices;
};

/// The features one head reads (for knn: the feature it compares).
std::vector<std::string> required_features(const HeadSpec& spec);

/// The union of the features of `specs`, and whether the encoder's attention is needed to compute them.
std::set<std::string> required_features(const std::vector<HeadSpec>& specs);
bool needs_attention(const std::set<std::string>& features);
/// Whether computing `features` needs the oracle's attention (the "dino" feature).
bool needs_oracle(const std::set<std::string>& features);

/// Checks that the encoder can give what `spec` needs ([cls] for cls heads and ep_all, a grid of at least NxN,
/// D divisible by the number of EP queries times d_out, and by the heads of aim and vjepa); throws BadInput
/// naming the head.
void check_head_fits(const HeadSpec& spec, const TokenLayout& layout);

/// Checks that an oracle encoder can weight the patches of `encoder` for the dino feature: it has a [cls]
/// token, takes the same input size and has the same patch grid. Throws BadInput naming `file`.
void check_oracle_fits(const VitConfig& oracle, const VitConfig& encoder, const std::string& file);

/// Computes the named features from the probed block's tokens (B, T, D) and, for the attention-weighted
/// features, that block's attention probabilities (B, heads, T, T); "dino" reads `oracle_weights` (B, N), the
/// oracle_cls_attention of the same images. Results are float32.
FeatureMap compute_features(const at::Tensor& tokens, const at::Tensor& attention, const TokenLayout& layout,
                            const std::set<std::string>& names, const at::Tensor& oracle_weights = {});

// Fixed pooling weights over the patches (each row sums to 1), as in the official beyond_cls features.
// Prefix tokens (the [cls] and registers) are dropped from the keys before renormalising.

/// center:N: uniform over the central NxN patches, rows c - ceil(N/2) .. c + floor(N/2) - 1, c = grid / 2
/// (official "cpN"); (n_patches).
at::Tensor center_weights(const TokenLayout& layout, int n);

/// cattn:N: the attention that the central NxN patches give to every patch, averaged over heads and over
/// those query patches, renormalised (official "caN", which divides by the sum + 1e-6); (B, n_patches).
at::Tensor central_attention_weights(const at::Tensor& attention, const TokenLayout& layout, int n);

/// attn-mean: the [cls] attention to the patches averaged over heads, renormalised (official "attn-mn").
at::Tensor cls_attention_mean_weights(const at::Tensor& attention, const TokenLayout& layout);

/// attn-minent: the [cls] attention to the patches of the head whose renormalised [cls]->patch attention has
/// the lowest entropy -sum p log(p + 1e-6) (official "attn-lcte"), renormalised.
at::Tensor cls_attention_min_entropy_weights(const at::Tensor& attention, const TokenLayout& layout);

/// dino: the oracle's last-block [cls] attention to its patch tokens (B, heads, T', T') -> (B, n_patches),
/// averaged over heads and NOT renormalised (official d_attn[:, :, 0, 1:]); the oracle's registers are left
/// out of the keys. `oracle_layout` is the oracle's layout, which must have a [cls] token.
at::Tensor oracle_cls_attention(const at::Tensor& attention, const TokenLayout& oracle_layout);

}  // namespace vitprobe
