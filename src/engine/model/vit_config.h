#pragma once
// The shape of a Vision Transformer encoder, and the named presets users know from timm.
#include <optional>
#include <string>
#include <vector>

namespace vitprobe {

/// How position information enters the token sequence.
enum class PosEmbedKind {
  Learned,        // a stored pos_embed tensor
  SinCos2D,       // fixed 2-D sin-cos (MAE / I-JEPA formula), computed, not stored
  None,           // no absolute position embedding (BEiT / SimMIM with use_abs_pos_emb=False): positions
                  // enter through the relative position bias of the attention logits only
};

/// "learned", "sincos-2d" or "none".
std::string pos_embed_name(PosEmbedKind kind);

/// Architecture of a ViT encoder; filled from presets or inferred from checkpoint weights.
struct VitConfig {
  int img_size = 224;
  int patch_size = 16;
  int in_chans = 3;
  int embed_dim = 768;
  int depth = 12;
  int num_heads = 12;
  int mlp_hidden_dim = 3072;
  bool qkv_bias = true;
  /// BEiT / SimMIM layout: only q and v have a bias (q_bias, v_bias), k's is fixed at zero; the encoder
  /// holds it as a qkv bias of cat(q_bias, 0, v_bias). Counts 2*D bias parameters instead of 3*D.
  bool zero_k_bias = false;
  bool class_token = true;
  int num_registers = 0;
  bool layer_scale = false;
  bool final_norm = true;
  PosEmbedKind pos_embed = PosEmbedKind::Learned;
  /// Learned pos_embed has a slot for [cls] (timm default); false for DINOv2-style no_embed_class or I-JEPA.
  bool pos_embed_has_cls_slot = true;
  double norm_eps = 1e-6;
  /// BEiT / SimMIM relative position bias (microsoft/SimMIM models/vision_transformer.py RelativePositionBias):
  /// a learned table of ((2h-1)(2w-1) + 3) rows x heads, indexed by the relative offset of two patches plus three
  /// rows for [cls]->patch, patch->[cls] and [cls]->[cls], added to the attention logits before the softmax.
  /// Per block (blocks.N.attn.relative_position_bias_table, use_rel_pos_bias) and/or one table shared by every
  /// block (rel_pos_bias.relative_position_bias_table, use_shared_rel_pos_bias). Both need [cls] and no registers.
  bool rel_pos_bias = false;
  bool shared_rel_pos_bias = false;

  /// Patches per side.
  int grid_size() const { return img_size / patch_size; }
  int num_patches() const { return grid_size() * grid_size(); }
  /// Tokens before the patches: [cls] (if any) then registers.
  int num_prefix_tokens() const { return (class_token ? 1 : 0) + num_registers; }
  int num_tokens() const { return num_prefix_tokens() + num_patches(); }
  int head_dim() const { return embed_dim / num_heads; }
  double mlp_ratio() const { return static_cast<double>(mlp_hidden_dim) / embed_dim; }
  /// Rows of a relative position bias table for this grid: (2g-1)^2 + 3.
  int num_relative_distances() const { return (2 * grid_size() - 1) * (2 * grid_size() - 1) + 3; }
  bool has_relative_position_bias() const { return rel_pos_bias || shared_rel_pos_bias; }
  /// Throws BadInput when the numbers are inconsistent (dim not divisible by heads, ...).
  void validate() const;
  /// Number of parameters of the encoder with this configuration (learned pos_embed included).
  long long num_parameters() const;
};

/// A named architecture such as "vit_base_patch16" (also accepts timm's "_224" suffixed names).
std::optional<VitConfig> find_preset(const std::string& name);

/// All preset names, for --help texts.
std::vector<std::string> preset_names();

/// Conventional head count for an embedding width (192->3, 384->6, 768->12, 1024->16, 1280->16, ...), 0 if unknown.
int default_num_heads(int embed_dim);

}  // namespace vitprobe
