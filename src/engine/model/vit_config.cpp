#include "model/vit_config.h"

#include <map>

#include "common/errors.h"

namespace vitprobe {
namespace {

struct PresetWidth {
  int embed_dim;
  int depth;
  int num_heads;
};

// timm's ViT families; the patch size is part of the name.
const std::map<std::string, PresetWidth>& preset_widths() {
  static const std::map<std::string, PresetWidth> widths = {
      {"vit_tiny", {192, 12, 3}},   {"vit_small", {384, 12, 6}},  {"vit_base", {768, 12, 12}},
      {"vit_large", {1024, 24, 16}}, {"vit_huge", {1280, 32, 16}}, {"vit_giant", {1536, 40, 24}},
  };
  return widths;
}

}  // namespace

std::string pos_embed_name(PosEmbedKind kind) {
  switch (kind) {
    case PosEmbedKind::Learned: return "learned";
    case PosEmbedKind::SinCos2D: return "sincos-2d";
    case PosEmbedKind::None: return "none";
  }
  return "learned";
}

void VitConfig::validate() const {
  auto fail = [](const std::string& what) { throw BadInput("VitConfig: " + what); };
  if (embed_dim <= 0 || depth <= 0 || num_heads <= 0 || patch_size <= 0 || img_size <= 0 || in_chans <= 0) {
    fail("sizes must be positive");
  }
  if (embed_dim % num_heads != 0) {
    fail("embed_dim " + std::to_string(embed_dim) + " is not divisible by num_heads " + std::to_string(num_heads));
  }
  if (img_size % patch_size != 0) {
    fail("image size " + std::to_string(img_size) + " is not a multiple of the patch size " +
         std::to_string(patch_size));
  }
  if (pos_embed == PosEmbedKind::SinCos2D && embed_dim % 4 != 0) fail("2-D sin-cos needs embed_dim % 4 == 0");
  if (num_registers < 0) fail("num_registers must be >= 0");
  if (has_relative_position_bias() && (!class_token || num_registers != 0)) {
    // The official index has exactly one extra row and column, for [cls] (SimMIM vision_transformer.py:75-80).
    fail("a relative position bias needs a [cls] token and no registers");
  }
  if (zero_k_bias && !qkv_bias) fail("zero_k_bias needs qkv_bias");
}

long long VitConfig::num_parameters() const {
  const long long d = embed_dim;
  const long long hidden = mlp_hidden_dim;
  long long n = d * in_chans * patch_size * patch_size + d;  // patch embedding
  if (class_token) n += d;
  n += static_cast<long long>(num_registers) * d;
  if (pos_embed == PosEmbedKind::Learned) {
    n += (num_patches() + (pos_embed_has_cls_slot && class_token ? 1 : 0)) * d;
  }
  long long block = 2 * 2 * d;                       // two LayerNorms
  block += 3 * d * d + (qkv_bias ? (zero_k_bias ? 2 : 3) * d : 0);  // qkv (BEiT: q_bias and v_bias only)
  block += d * d + d;                                // proj
  block += d * hidden + hidden + hidden * d + d;     // MLP
  if (layer_scale) block += 2 * d;
  const long long bias_table = static_cast<long long>(num_relative_distances()) * num_heads;
  if (rel_pos_bias) block += bias_table;
  n += block * depth;
  if (shared_rel_pos_bias) n += bias_table;
  if (final_norm) n += 2 * d;
  return n;
}

std::optional<VitConfig> find_preset(const std::string& name) {
  std::string base = name;
  if (base.size() > 4 && base.compare(base.size() - 4, 4, "_224") == 0) base.resize(base.size() - 4);
  const auto patch_at = base.rfind("_patch");
  if (patch_at == std::string::npos) return std::nullopt;
  const auto width = preset_widths().find(base.substr(0, patch_at));
  if (width == preset_widths().end()) return std::nullopt;
  int patch = 0;
  try {
    patch = std::stoi(base.substr(patch_at + 6));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (patch != 8 && patch != 14 && patch != 16 && patch != 32) return std::nullopt;
  VitConfig config;
  config.embed_dim = width->second.embed_dim;
  config.depth = width->second.depth;
  config.num_heads = width->second.num_heads;
  config.mlp_hidden_dim = 4 * config.embed_dim;
  config.patch_size = patch;
  config.img_size = 224;
  return config;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& [family, width] : preset_widths()) {
    for (int patch : {14, 16}) names.push_back(family + "_patch" + std::to_string(patch));
  }
  return names;
}

int default_num_heads(int embed_dim) {
  for (const auto& [family, width] : preset_widths()) {
    if (width.embed_dim == embed_dim) return width.num_heads;
  }
  return embed_dim % 64 == 0 ? embed_dim / 64 : 0;
}

}  // namespace vitprobe
