#include "checkpoint/key_maps.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <regex>

#include "common/errors.h"

namespace vitprobe {
namespace {

// Rules every source shares: BEiT/SimMIM-style LayerScale names.
const std::vector<KeyRule> kCommonRules = {
    {R"(^blocks\.(\d+)\.gamma_1$)", "blocks.$1.ls1.gamma"},
    {R"(^blocks\.(\d+)\.gamma_2$)", "blocks.$1.ls2.gamma"},
};

// torchvision.models.VisionTransformer.
const std::vector<KeyRule> kTorchvisionRules = {
    {R"(^conv_proj\.(weight|bias)$)", "patch_embed.proj.$1"},
    {R"(^class_token$)", "cls_token"},
    {R"(^encoder\.pos_embedding$)", "pos_embed"},
    {R"(^encoder\.layers\.encoder_layer_(\d+)\.ln_1\.(weight|bias)$)", "blocks.$1.norm1.$2"},
    {R"(^encoder\.layers\.encoder_layer_(\d+)\.ln_2\.(weight|bias)$)", "blocks.$1.norm2.$2"},
    {R"(^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_(weight|bias)$)", "blocks.$1.attn.qkv.$2"},
    {R"(^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.(weight|bias)$)", "blocks.$1.attn.proj.$2"},
    {R"(^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(0|linear_1)\.(weight|bias)$)", "blocks.$1.mlp.fc1.$3"},
    {R"(^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(3|linear_2)\.(weight|bias)$)", "blocks.$1.mlp.fc2.$3"},
    {R"(^encoder\.ln\.(weight|bias)$)", "norm.$1"},
    {R"(^heads\.head\.(weight|bias)$)", "head.$1"},
};

// facebookresearch/dinov2: registers under their own name, and chunked blocks (blocks.C.I.) in FSDP checkpoints.
const std::vector<KeyRule> kDinov2Rules = {
    {R"(^register_tokens$)", "reg_token"},
    {R"(^blocks\.\d+\.(\d+)\.(.*)$)", "blocks.$1.$2"},
};

// BEiT / SimMIM (microsoft/SimMIM models/vision_transformer.py, gmum/beyond_cls models_simmim.py, timm's Beit):
// LayerScale as gamma_1 / gamma_2 (SimMIM vision_transformer.py:139-141). The other names of the layout are
// kept: attn.q_bias / attn.v_bias are merged by remap_to_timm, and timm's Beit uses the same relative
// position names (blocks.N.attn.relative_position_bias_table, rel_pos_bias.relative_position_bias_table).
const std::vector<KeyRule> kBeitRules = {
    {R"(^blocks\.(\d+)\.gamma_1$)", "blocks.$1.ls1.gamma"},
    {R"(^blocks\.(\d+)\.gamma_2$)", "blocks.$1.ls2.gamma"},
};

// Sources whose keys are timm's already (after wrapper and prefix removal).
const std::vector<KeyRule> kNoRules = {};

const std::regex& encoder_key_regex() {
  static const std::regex pattern(
      R"(^(patch_embed\.proj\.(weight|bias)|cls_token|reg_token|pos_embed|norm\.(weight|bias)|)"
      R"(blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)|blocks\.\d+\.ls[12]\.gamma|)"
      R"((blocks\.\d+\.attn|rel_pos_bias)\.relative_position_(bias_table|index))$)");
  return pattern;
}

const std::regex& qv_bias_regex() {
  static const std::regex pattern(R"(^(blocks\.\d+\.attn)\.(q|v)_bias$)");
  return pattern;
}

// Merges each block's q_bias and v_bias into qkv.bias = cat(q_bias, zeros, v_bias), in place of the q_bias
// entry; returns whether any block had them.
bool merge_qv_biases(StateDict& renamed) {
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> pairs;  // "blocks.N.attn" -> (q, v)
  for (const auto& [key, tensor] : renamed) {
    std::smatch match;
    if (!std::regex_match(key, match, qv_bias_regex())) continue;
    auto& pair = pairs[match[1].str()];
    (match[2].str() == "q" ? pair.first : pair.second) = tensor;
  }
  if (pairs.empty()) return false;
  StateDict merged;
  for (auto& [key, tensor] : renamed) {
    std::smatch match;
    if (!std::regex_match(key, match, qv_bias_regex())) {
      merged.emplace_back(key, tensor);
      continue;
    }
    const auto& [q, v] = pairs.at(match[1].str());
    if (!q.defined() || !v.defined()) {
      throw BadInput("key '" + match[1].str() + (q.defined() ? ".q_bias" : ".v_bias") + "' has no matching '" +
                     match[1].str() + (q.defined() ? ".v_bias" : ".q_bias") + "' (BEiT layout: both or neither)");
    }
    if (q.dim() != 1 || v.sizes() != q.sizes()) {
      throw BadInput("'" + match[1].str() + ".q_bias' and '.v_bias' must be vectors of one length");
    }
    if (match[2].str() == "q") {
      const auto q32 = q.to(at::kFloat), v32 = v.to(at::kFloat);
      merged.emplace_back(match[1].str() + ".qkv.bias", at::cat({q32, at::zeros_like(q32), v32}));
    }
  }
  renamed = std::move(merged);
  return true;
}

bool has_key(const StateDict& state_dict, const std::string& key) {
  return std::any_of(state_dict.begin(), state_dict.end(), [&](const auto& item) { return item.first == key; });
}

bool has_key_containing(const StateDict& state_dict, const std::string& part) {
  return std::any_of(state_dict.begin(), state_dict.end(),
                     [&](const auto& item) { return item.first.find(part) != std::string::npos; });
}

std::string apply_rules(const std::string& key, const std::vector<KeyRule>& rules) {
  for (const auto& rule : rules) {
    const std::regex pattern(rule.pattern);
    if (std::regex_search(key, pattern)) return std::regex_replace(key, pattern, rule.replacement);
  }
  return key;
}

}  // namespace

std::string source_name(CheckpointSource source) {
  switch (source) {
    case CheckpointSource::Timm: return "timm";
    case CheckpointSource::Mae: return "mae";
    case CheckpointSource::Dino: return "dino";
    case CheckpointSource::Ibot: return "ibot";
    case CheckpointSource::MocoV3: return "mocov3";
    case CheckpointSource::Dinov2: return "dinov2";
    case CheckpointSource::Ijepa: return "ijepa";
    case CheckpointSource::Torchvision: return "torchvision";
    case CheckpointSource::Beit: return "beit";
  }
  return "timm";
}

std::vector<std::string> format_names() {
  return {"auto", "timm", "mae", "dino", "ibot", "mocov3", "dinov2", "ijepa", "torchvision", "beit", "simmim"};
}

std::optional<CheckpointSource> parse_source(const std::string& name) {
  if (name == "simmim") return CheckpointSource::Beit;
  for (auto source : {CheckpointSource::Timm, CheckpointSource::Mae, CheckpointSource::Dino, CheckpointSource::Ibot,
                      CheckpointSource::MocoV3, CheckpointSource::Dinov2, CheckpointSource::Ijepa,
                      CheckpointSource::Torchvision, CheckpointSource::Beit}) {
    if (source_name(source) == name) return source;
  }
  return std::nullopt;
}

const std::vector<KeyRule>& key_rules(CheckpointSource source) {
  switch (source) {
    case CheckpointSource::Torchvision: return kTorchvisionRules;
    case CheckpointSource::Dinov2: return kDinov2Rules;
    case CheckpointSource::Beit: return kBeitRules;
    default: return kNoRules;
  }
}

CheckpointSource detect_source(const StateDict& state_dict, const std::string& container_and_prefix) {
  const auto& where = container_and_prefix;
  if (has_key(state_dict, "conv_proj.weight")) return CheckpointSource::Torchvision;
  // BEiT / SimMIM sentinels: split q/v biases, a relative position table, gamma_1 LayerScale.
  if (has_key_containing(state_dict, ".attn.q_bias") || has_key_containing(state_dict, "relative_position_bias_table") ||
      has_key_containing(state_dict, ".gamma_1")) {
    return CheckpointSource::Beit;
  }
  if (where.find("base_encoder") != std::string::npos) return CheckpointSource::MocoV3;
  if (has_key(state_dict, "register_tokens") ||
      (has_key(state_dict, "mask_token") && has_key(state_dict, "blocks.0.ls1.gamma"))) {
    return CheckpointSource::Dinov2;
  }
  if (where.find("teacher") != std::string::npos || where.find("student") != std::string::npos ||
      where.find("backbone") != std::string::npos) {
    return has_key_containing(state_dict, "last_layer2") ? CheckpointSource::Ibot : CheckpointSource::Dino;
  }
  if (where.find("target_encoder") != std::string::npos || !has_key_containing(state_dict, "cls_token")) {
    return CheckpointSource::Ijepa;
  }
  if (has_key_containing(state_dict, "decoder_")) return CheckpointSource::Mae;
  return CheckpointSource::Timm;
}

RemappedKeys remap_to_timm(const StateDict& state_dict, CheckpointSource source) {
  RemappedKeys remapped;
  // Renamed keys with their original names, so ignored keys are reported as the file spells them.
  StateDict renamed_dict;
  std::map<std::string, std::string> original;
  for (const auto& [key, tensor] : state_dict) {
    std::string renamed = apply_rules(key, key_rules(source));
    renamed = apply_rules(renamed, kCommonRules);
    original.emplace(renamed, key);
    renamed_dict.emplace_back(renamed, tensor);
  }
  remapped.zero_k_bias = merge_qv_biases(renamed_dict);
  for (const auto& [renamed, tensor] : renamed_dict) {
    const auto found = original.find(renamed);
    const std::string& key = found == original.end() ? renamed : found->second;
    if (std::regex_match(renamed, encoder_key_regex())) {
      remapped.encoder.emplace_back(renamed, tensor);
    } else if ((renamed == "head.weight" && tensor.dim() == 2) || (renamed == "head.bias" && tensor.dim() == 1)) {
      remapped.classifier.emplace_back(renamed, tensor);
    } else {
      remapped.ignored.push_back(key);
    }
  }
  // A head.bias without a head.weight (or the reverse) is no classifier.
  if (remapped.classifier.size() == 1) {
    remapped.ignored.push_back(remapped.classifier.front().first);
    remapped.classifier.clear();
  }
  return remapped;
}

}  // namespace vitprobe
