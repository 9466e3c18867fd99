// BEiT / SimMIM relative position bias, the magnitudes before and after LayerScale, and the fp32 softmax of the
// attention probabilities in every compute dtype and path. The golden tests (golden.forward.simmim,
// golden.attn_stats.magnitude_before_layer_scale) compare with the official model; these check the paths
// against each other and the index against its formula.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/errors.h"
#include "kernels/onednn_matmul.h"
#include "model/pos_embed.h"
#include "model/random_weights.h"
#include "model/vit_encoder.h"

namespace vitprobe {
namespace {

// A tiny BEiT / SimMIM-style encoder: no absolute position embedding, LayerScale, q/v biases.
VitConfig beit_config(bool per_block, bool shared) {
  VitConfig config;
  config.img_size = 32;
  config.patch_size = 8;
  config.embed_dim = 64;
  config.depth = 2;
  config.num_heads = 4;
  config.mlp_hidden_dim = 128;
  config.layer_scale = true;
  config.zero_k_bias = true;
  config.pos_embed = PosEmbedKind::None;
  config.pos_embed_has_cls_slot = false;
  config.rel_pos_bias = per_block;
  config.shared_rel_pos_bias = shared;
  return config;
}

// Random weights whose relative tables are of order 1 (they visibly move the attention), whose LayerScale
// gammas are a constant `gamma` and whose qkv weights are scaled by `sharpen` (timm's init gives near-uniform
// attention rows, where every path agrees by accident).
VitWeights beit_weights(const VitConfig& config, double gamma, double sharpen = 20.0) {
  auto weights = random_vit_weights(config, 11);
  at::manual_seed(5);
  if (weights.rel_pos_bias_table.defined()) weights.rel_pos_bias_table = at::randn_like(weights.rel_pos_bias_table);
  for (auto& block : weights.blocks) {
    if (block.rel_pos_bias_table.defined()) block.rel_pos_bias_table = at::randn_like(block.rel_pos_bias_table);
    block.ls1_gamma = at::full_like(block.ls1_gamma, gamma);
    block.ls2_gamma = at::full_like(block.ls2_gamma, gamma);
    block.qkv_weight = block.qkv_weight * sharpen;
  }
  return weights;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

ForwardRequest everything(int depth) {
  ForwardRequest request;
  for (int block = 0; block < depth; ++block) request.attention_blocks.push_back(block);
  request.magnitudes = true;
  return request;
}

TEST(RelativePosition, IndexFollowsTheOfficialFormula) {
  const int g = 3;
  const auto index = relative_position_index(g);
  ASSERT_EQ(index.sizes(), (at::IntArrayRef{10, 10}));
  ASSERT_EQ(index.scalar_type(), at::kLong);
  const int64_t rows = 5 * 5 + 3;  // (2g-1)^2 + 3
  EXPECT_EQ(index[0][0].item<int64_t>(), rows - 1);
  for (int j = 1; j < 10; ++j) EXPECT_EQ(index[0][j].item<int64_t>(), rows - 3);  // [cls] -> patches
  for (int i = 1; i < 10; ++i) EXPECT_EQ(index[i][0].item<int64_t>(), rows - 2);  // patches -> [cls]
  // (hi - hj + g - 1) * (2g - 1) + (wi - wj + g - 1), patches row-major after [cls].
  EXPECT_EQ(index[1 + 0][1 + 8].item<int64_t>(), 0);   // (0,0) -> (2,2)
  EXPECT_EQ(index[1 + 8][1 + 0].item<int64_t>(), 24);  // (2,2) -> (0,0)
  EXPECT_EQ(index[1 + 4][1 + 4].item<int64_t>(), 12);  // the diagonal: zero offset
  EXPECT_EQ(index[1 + 1][1 + 3].item<int64_t>(), (-1 + 2) * 5 + (1 + 2));  // (0,1) -> (1,0): dh = -1, dw = +1
  EXPECT_EQ(index.max().item<int64_t>(), rows - 1);
}

TEST(RelativePosition, BiasGathersTheTableHeadFirst) {
  const auto table = at::arange(28 * 2, at::kFloat).view({28, 2});
  const auto bias = relative_position_bias(table, 3, "table");
  ASSERT_EQ(bias.sizes(), (at::IntArrayRef{2, 10, 10}));
  const auto index = relative_position_index(3);
  for (int head = 0; head < 2; ++head) {
    for (int i : {0, 3, 9}) {
      for (int j : {0, 5, 8}) {
        EXPECT_EQ(bias[head][i][j].item<float>(), table[index[i][j].item<int64_t>()][head].item<float>());
      }
    }
  }
  EXPECT_THROW(relative_position_bias(at::zeros({27, 2}), 3, "table"), BadInput);
  EXPECT_THROW(relative_position_bias(at::zeros({28}), 3, "table"), BadInput);
}

TEST(RelativePosition, ConfigChecksAndParameterCount) {
  auto config = beit_config(true, true);
  EXPECT_NO_THROW(config.validate());
  const long long d = 64, table = 7 * 7 + 3;
  auto plain = config;
  plain.rel_pos_bias = plain.shared_rel_pos_bias = false;
  plain.zero_k_bias = false;
  EXPECT_EQ(config.num_parameters() - plain.num_parameters(), 2 * (table * 4 - d) + table * 4);
  auto registers = config;
  registers.num_registers = 2;
  EXPECT_THROW(registers.validate(), BadInput);
  auto no_cls = config;
  no_cls.class_token = false;
  EXPECT_THROW(no_cls.validate(), BadInput);
  // A table of the wrong grid is refused when the encoder is built, naming the key.
  auto weights = beit_weights(config, 0.5);
  weights.blocks[1].rel_pos_bias_table = at::zeros({27, 4});
  try {
    VitEncoder encoder(config, weights, at::kFloat, EncoderBackend::Reference);
    FAIL() << "a table of the wrong size was accepted";
  } catch (const BadInput& error) {
    EXPECT_NE(std::string(error.what()).find("blocks.1.attn.relative_position_bias_table"), std::string::npos) << error.what();
  }
}

TEST(RelativePosition, EveryPathAddsTheBias) {
  const auto config = beit_config(true, true);
  const auto weights = beit_weights(config, 0.5);
  const VitEncoder reference(config, weights, at::kFloat, EncoderBackend::Reference);
  at::manual_seed(3);
  const auto images = at::randn({2, 3, 32, 32});
  const auto expected = reference.forward(images, everything(config.depth));
  // The SDPA path (no maps asked for) with the bias as an additive mask.
  const auto sdpa = reference.forward(images, ForwardRequest{});
  EXPECT_LE(max_diff(sdpa.tokens, expected.tokens), 1e-4);
  // The encoder's bias is the block's own table plus the shared one, expanded.
  const auto own = relative_position_bias(weights.blocks[0].rel_pos_bias_table, 4, "own");
  const auto shared = relative_position_bias(weights.rel_pos_bias_table, 4, "shared");
  EXPECT_LE(max_diff(reference.attention_bias(0), own + shared), 1e-6);
  // Without the tables the attention is different: the bias is not dropped anywhere.
  auto no_tables = weights;
  no_tables.rel_pos_bias_table = at::zeros_like(weights.rel_pos_bias_table);
  for (auto& block : no_tables.blocks) block.rel_pos_bias_table = at::zeros_like(block.rel_pos_bias_table);
  const VitEncoder unbiased(config, no_tables, at::kFloat, EncoderBackend::Reference);
  EXPECT_GT(max_diff(unbiased.forward(images, everything(config.depth)).attention.at(0), expected.attention.at(0)), 1e-2);
  if (!onednn_available()) GTEST_FAIL() << "this build has no oneDNN fast path (libdnnl-dev missing?)";
  const VitEncoder fast(config, weights, at::kFloat, EncoderBackend::Fast);
  const auto got = fast.forward(images, everything(config.depth));
  EXPECT_LE(max_diff(got.tokens, expected.tokens), 1e-4);
  for (int block = 0; block < config.depth; ++block) {
    EXPECT_LE(max_diff(got.attention.at(block), expected.attention.at(block)), 1e-5);
  }
  EXPECT_LE(max_diff(fast.forward(images, ForwardRequest{}).tokens, expected.tokens), 1e-4);
}

TEST(Magnitudes, BranchNormIsTakenBeforeLayerScale) {
  // With a constant gamma the norm after LayerScale is exactly gamma times the norm before it.
  const double gamma = 0.25;
  const auto config = beit_config(false, true);
  const auto weights = beit_weights(config, gamma);
  at::manual_seed(4);
  const auto images = at::randn({2, 3, 32, 32});
  std::vector<EncoderBackend> backends = {EncoderBackend::Reference};
  if (onednn_available()) backends.push_back(EncoderBackend::Fast);
  at::Tensor reference_norms;
  for (const auto backend : backends) {
    const VitEncoder encoder(config, weights, at::kFloat, backend);
    const auto result = encoder.forward(images, everything(config.depth));
    ASSERT_EQ(result.attention_branch_norms.size(), 2u);
    ASSERT_EQ(result.attention_branch_norms_after_layer_scale.size(), 2u);
    for (int block = 0; block < config.depth; ++block) {
      const auto& before = result.attention_branch_norms[block];
      const auto& after = result.attention_branch_norms_after_layer_scale[block];
      EXPECT_LE(max_diff(after, before * gamma), 1e-5 * before.abs().max().item<double>()) << encoder.backend_name();
      EXPECT_GT(before.min().item<double>(), 0.0);
    }
    if (!reference_norms.defined()) reference_norms = result.attention_branch_norms[1];
    EXPECT_LE(max_diff(result.attention_branch_norms[1], reference_norms), 1e-4) << encoder.backend_name();
  }
  // Without LayerScale the two are the same values.
  auto plain_config = config;
  plain_config.layer_scale = false;
  auto plain_weights = weights;
  for (auto& block : plain_weights.blocks) block.ls1_gamma = block.ls2_gamma = at::Tensor();
  const VitEncoder plain(plain_config, plain_weights, at::kFloat, EncoderBackend::Reference);
  const auto result = plain.forward(images, everything(config.depth));
  EXPECT_TRUE(at::equal(result.attention_branch_norms[0], result.attention_branch_norms_after_layer_scale[0]));
}

TEST(Softmax, AttentionProbabilitiesAreFp32InEveryDtype) {
  // bf16 probabilities would be off by ~1e-3 (8 bits of mantissa); fp32 ones sum to 1 within 1e-5 per row.
  // Moderately sharp attention (qkv x 5), so the bf16 products stay close to the fp32 model.
  const auto config = beit_config(true, true);
  const auto weights = beit_weights(config, 0.5, 5.0);
  at::manual_seed(6);
  const auto images = at::randn({2, 3, 32, 32});
  const VitEncoder fp32(config, weights, at::kFloat, EncoderBackend::Reference);
  const auto expected = fp32.forward(images, everything(config.depth));
  std::vector<EncoderBackend> backends = {EncoderBackend::Reference};
  if (onednn_available()) backends.push_back(EncoderBackend::Fast);
  for (const auto backend : backends) {
    const VitEncoder bf16(config, weights, at::kBFloat16, backend);
    const auto got = bf16.forward(images, everything(config.depth));
    for (int block = 0; block < config.depth; ++block) {
      const auto& attention = got.attention.at(block);
      ASSERT_EQ(attention.scalar_type(), at::kFloat) << bf16.backend_name();
      EXPECT_LE((attention.sum(-1) - 1.0).abs().max().item<double>(), 1e-5) << bf16.backend_name();
      // Not rounded to bf16 after the softmax: values off the bf16 grid exist.
      EXPECT_FALSE(at::equal(attention, attention.to(at::kBFloat16).to(at::kFloat))) << bf16.backend_name();
      // Close to the fp32 model's (bf16 products only).
      EXPECT_LE(max_diff(attention, expected.attention.at(block)), 0.05) << bf16.backend_name();
      EXPECT_EQ(got.attention_branch_norms[block].scalar_type(), at::kFloat);
    }
  }
}

}  // namespace
}  // namespace vitprobe
