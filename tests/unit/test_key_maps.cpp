// The BEiT / SimMIM key table: detection by sentinel keys, the q/v bias merge, names kept or ignored.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "checkpoint/key_maps.h"
#include "common/errors.h"

namespace vitprobe {
namespace {

const at::Tensor* find(const StateDict& state, const std::string& key) {
  const auto found = std::find_if(state.begin(), state.end(), [&](const auto& item) { return item.first == key; });
  return found == state.end() ? nullptr : &found->second;
}

// One block of SimMIM's encoder as its state dict names it (microsoft/SimMIM models/vision_transformer.py).
StateDict simmim_block() {
  return {{"cls_token", at::zeros({1, 1, 4})},
          {"patch_embed.proj.weight", at::zeros({4, 3, 2, 2})},
          {"rel_pos_bias.relative_position_bias_table", at::zeros({12, 2})},
          {"rel_pos_bias.relative_position_index", at::zeros({5, 5}, at::kLong)},
          {"blocks.0.gamma_1", at::full({4}, 0.1)},
          {"blocks.0.attn.qkv.weight", at::zeros({12, 4})},
          {"blocks.0.attn.q_bias", at::arange(1, 5, at::kFloat)},
          {"blocks.0.attn.v_bias", at::arange(5, 9, at::kFloat)},
          {"blocks.0.attn.relative_position_bias_table", at::zeros({12, 2})},
          {"fc_norm.weight", at::ones({4})},
          {"mask_token", at::zeros({1, 1, 4})}};
}

TEST(KeyMaps, DetectsBeitBySentinelKeys) {
  EXPECT_EQ(detect_source(simmim_block(), "model/encoder."), CheckpointSource::Beit);
  EXPECT_EQ(detect_source({{"cls_token", at::zeros({1})}, {"blocks.0.attn.q_bias", at::zeros({4})}}, "/"),
            CheckpointSource::Beit);
  EXPECT_EQ(detect_source({{"cls_token", at::zeros({1})}, {"blocks.0.gamma_1", at::zeros({4})}}, "/"),
            CheckpointSource::Beit);
  EXPECT_EQ(detect_source({{"cls_token", at::zeros({1})}, {"blocks.0.attn.qkv.bias", at::zeros({4})}}, "/"),
            CheckpointSource::Timm);
  EXPECT_EQ(parse_source("simmim"), CheckpointSource::Beit);
  EXPECT_EQ(parse_source("beit"), CheckpointSource::Beit);
  EXPECT_EQ(source_name(CheckpointSource::Beit), "beit");
}

TEST(KeyMaps, MergesQAndVBiasesWithAZeroK) {
  const auto remapped = remap_to_timm(simmim_block(), CheckpointSource::Beit);
  EXPECT_TRUE(remapped.zero_k_bias);
  const auto* bias = find(remapped.encoder, "blocks.0.attn.qkv.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_TRUE(at::equal(*bias, at::cat({at::arange(1, 5, at::kFloat), at::zeros({4}), at::arange(5, 9, at::kFloat)})));
  EXPECT_EQ(find(remapped.encoder, "blocks.0.attn.q_bias"), nullptr);
  EXPECT_NE(find(remapped.encoder, "blocks.0.ls1.gamma"), nullptr);
  EXPECT_NE(find(remapped.encoder, "blocks.0.attn.relative_position_bias_table"), nullptr);
  EXPECT_NE(find(remapped.encoder, "rel_pos_bias.relative_position_bias_table"), nullptr);
  EXPECT_NE(find(remapped.encoder, "rel_pos_bias.relative_position_index"), nullptr);  // checked by the loader
  // Ignored keys are reported under the names the file uses.
  for (const char* key : {"fc_norm.weight", "mask_token"}) {
    EXPECT_NE(std::find(remapped.ignored.begin(), remapped.ignored.end(), key), remapped.ignored.end()) << key;
  }
  // The merge does not depend on the detected source (a --format timm run must not drop the biases).
  EXPECT_NE(find(remap_to_timm(simmim_block(), CheckpointSource::Timm).encoder, "blocks.0.attn.qkv.bias"), nullptr);
}

TEST(KeyMaps, RefusesAQBiasWithoutItsVBias) {
  auto state = simmim_block();
  state.erase(std::remove_if(state.begin(), state.end(), [](const auto& item) { return item.first == "blocks.0.attn.v_bias"; }),
              state.end());
  try {
    remap_to_timm(state, CheckpointSource::Beit);
    FAIL() << "a lone q_bias was accepted";
  } catch (const BadInput& error) {
    EXPECT_NE(std::string(error.what()).find("blocks.0.attn.q_bias"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace vitprobe
