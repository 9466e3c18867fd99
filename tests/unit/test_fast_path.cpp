// The oneDNN fast path against the libtorch reference path on the same random weights.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <limits>
#include <string>

#include "common/errors.h"
#include "kernels/onednn_matmul.h"
#include "kernels/softmax.h"
#include "model/random_weights.h"
#include "model/vit_encoder.h"

namespace vitprobe {
namespace {

VitConfig small_config(bool layer_scale, int registers) {
  VitConfig config;
  config.img_size = 32;
  config.patch_size = 8;
  config.embed_dim = 64;
  config.depth = 3;
  config.num_heads = 4;
  config.mlp_hidden_dim = 256;
  config.layer_scale = layer_scale;
  config.num_registers = registers;
  return config;
}

// Smallest cosine similarity between matching tokens of a and b, (B, T, D).
double min_token_cosine(const at::Tensor& a, const at::Tensor& b) {
  return at::cosine_similarity(a.to(at::kDouble), b.to(at::kDouble), -1).min().item<double>();
}

class FastPathTest : public ::testing::TestWithParam<std::pair<bool, int>> {};

TEST_P(FastPathTest, MatchesReferenceInFp32AndBf16) {
  if (!onednn_available()) GTEST_FAIL() << "this build has no oneDNN fast path (libdnnl-dev missing?)";
  const auto [layer_scale, registers] = GetParam();
  const auto config = small_config(layer_scale, registers);
  const auto weights = random_vit_weights(config, 7);
  const VitEncoder reference(config, weights, at::kFloat, EncoderBackend::Reference);
  const VitEncoder fast(config, weights, at::kFloat, EncoderBackend::Fast);
  const VitEncoder fast_bf16(config, weights, at::kBFloat16, EncoderBackend::Fast);
  ASSERT_EQ(fast.backend_name(), "fast");
  ASSERT_EQ(reference.backend_name(), "reference");

  at::manual_seed(3);
  const auto images = at::randn({3, 3, 32, 32});
  ForwardRequest request;
  request.block_outputs = {0, 2};
  request.attention_blocks = {0, 1, 2};
  request.magnitudes = true;
  const auto expected = reference.forward(images, request);
  const auto got = fast.forward(images, request);

  EXPECT_LE((got.tokens - expected.tokens).abs().max().item<double>(), 1e-4);
  for (int block : {0, 2}) {
    EXPECT_LE((got.block_outputs.at(block) - expected.block_outputs.at(block)).abs().max().item<double>(), 1e-4);
  }
  for (int block : {0, 1, 2}) {
    EXPECT_LE((got.attention.at(block).to(at::kFloat) - expected.attention.at(block)).abs().max().item<double>(), 1e-5);
    EXPECT_LE((got.attention_branch_norms[block] - expected.attention_branch_norms[block]).abs().max().item<double>(), 1e-4);
    EXPECT_LE((got.residual_norms[block] - expected.residual_norms[block]).abs().max().item<double>(), 1e-4);
  }
  // A plain forward (fused residuals, no captures) gives the same tokens.
  const auto plain = fast.forward(images, ForwardRequest{});
  EXPECT_LE((plain.tokens - expected.tokens).abs().max().item<double>(), 1e-4);

  const auto low = fast_bf16.forward(images, ForwardRequest{});
  EXPECT_GE(min_token_cosine(low.tokens.to(at::kFloat), expected.tokens), 0.999);
}

INSTANTIATE_TEST_SUITE_P(Variants, FastPathTest,
                         ::testing::Values(std::make_pair(false, 0), std::make_pair(true, 4)));

TEST(FastPath, ChunkedMlpMatchesReference) {
  // A wide MLP (16,384 hidden x 4 bytes = 64 KiB per row) is run in chunks of 256 rows; 8 images x 65 tokens
  // = 520 rows take three chunks, the last one short.
  if (!onednn_available()) GTEST_FAIL() << "this build has no oneDNN fast path";
  VitConfig config = small_config(/*layer_scale=*/true, 0);
  config.patch_size = 4;
  config.depth = 1;
  config.mlp_hidden_dim = 16384;
  const int64_t rows = 8 * ((32 / 4) * (32 / 4) + 1);
  const int64_t chunk = std::max<int64_t>(256, (int64_t{16} << 20) / (config.mlp_hidden_dim * 4));
  ASSERT_GT(rows, 2 * chunk);  // the fp32 run takes at least three chunks
  const auto weights = random_vit_weights(config, 9);
  const VitEncoder reference(config, weights, at::kFloat, EncoderBackend::Reference);
  const VitEncoder fast(config, weights, at::kFloat, EncoderBackend::Fast);
  const VitEncoder fast_bf16(config, weights, at::kBFloat16, EncoderBackend::Fast);  // 2 bytes a value: 512-row chunks
  at::manual_seed(5);
  const auto images = at::randn({8, 3, 32, 32});
  const auto expected = reference.forward(images, ForwardRequest{});
  const auto got = fast.forward(images, ForwardRequest{});
  EXPECT_LE((got.tokens - expected.tokens).abs().max().item<double>(), 1e-4);
  const auto low = fast_bf16.forward(images, ForwardRequest{});
  EXPECT_GE(min_token_cosine(low.tokens.to(at::kFloat), expected.tokens), 0.999);
}

TEST(PackedLinear, FusesGeluScaleAndResidual) {
  if (!onednn_available()) GTEST_FAIL() << "this build has no oneDNN fast path";
  at::manual_seed(1);
  const auto weight = at::randn({24, 40}), bias = at::randn({24});
  const auto x = at::randn({10, 40}), residual = at::randn({10, 24}), scale = at::randn({24});
  const PackedLinear gelu(weight, bias, at::kFloat, Activation::Gelu);
  const auto expected = residual + scale * at::gelu(at::linear(x, weight, bias));
  EXPECT_LE((gelu(x, residual, scale) - expected).abs().max().item<double>(), 1e-4);
  const PackedLinear plain(weight, {}, at::kFloat, Activation::None);
  EXPECT_LE((plain(x) - at::linear(x, weight)).abs().max().item<double>(), 1e-4);
  // A second batch size gets its own packed variant.
  const auto x2 = at::randn({3, 40});
  EXPECT_LE((plain(x2) - at::linear(x2, weight)).abs().max().item<double>(), 1e-4);
}

// The fast path's softmax against libtorch's, in float64, on rows of every length class of the AVX-512 loop
// (shorter than a vector, whole vectors, a tail) and with spread-out and extreme values; both loops.
TEST(Softmax, MatchesATenInFloatPrecision) {
  if (!softmax_vectorized_available()) std::cout << "note: no AVX-512 on this CPU: both passes run the portable loop\n";
  at::manual_seed(2);
  for (bool vectorized : {true, false}) {
    for (int64_t n : {1, 5, 16, 17, 64, 197, 200, 1025}) {
      for (double spread : {1.0, 30.0}) {
        auto x = at::randn({7, 3, n}) * spread;
        x.select(-1, 0).fill_(-1e30);  // a vanishing entry (exp underflows to 0, no NaN)
        // exp(-87) is a normal float, divided by the row's sum it is not: written as 0, not as a denormal.
        if (n > 2) x.select(-1, 1).copy_(std::get<0>(x.max(-1)) - 87.0);
        const auto expected = at::softmax(x.to(at::kDouble), -1);
        // Rounding x - max to float already moves exp by up to 2^-24 |x - max| relative: that much is allowed.
        const auto allowed = 2e-6 + 6e-8 * (x - std::get<0>(x.max(-1, true))).abs().to(at::kDouble);
        softmax_lastdim_(x, vectorized);
        const std::string where = "n = " + std::to_string(n) + ", spread " + std::to_string(spread) +
                                  ", vectorized " + std::to_string(vectorized);
        const auto error = (x.to(at::kDouble) - expected).abs() / expected.clamp_min(1e-300);
        EXPECT_TRUE((error <= allowed).masked_select(expected > 1e-37).all().item<bool>()) << where;
        EXPECT_LE((x.to(at::kDouble).sum(-1) - 1).abs().max().item<double>(), 4e-6) << where;
        // No denormals: every probability is 0 or a normal float.
        EXPECT_TRUE(((x == 0) | (x >= std::numeric_limits<float>::min())).all().item<bool>()) << where;
        if (n > 1) EXPECT_EQ(x.select(-1, 0).max().item<float>(), 0.f) << where;
      }
    }
    // A NaN or +inf in a row gives a row of NaN (as at::softmax); the other rows are unaffected.
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      for (int64_t n : {5, 40}) {
        auto x = at::randn({3, n});
        x[1][n - 2] = bad;
        const auto expected = at::softmax(x, -1);
        softmax_lastdim_(x, vectorized);
        EXPECT_TRUE(x[1].isnan().all().item<bool>()) << "bad value " << bad << ", n = " << n << ", vectorized " << vectorized;
        EXPECT_LE((x.index_select(0, at::tensor({0, 2}, at::kLong)) - expected.index_select(0, at::tensor({0, 2}, at::kLong)))
                      .abs().max().item<double>(), 1e-6);
      }
    }
  }
  // Many rows: the parallel split over threads gives each row the same result as alone.
  auto many = at::randn({4096, 197});
  const auto expected = at::softmax(many, -1);
  softmax_lastdim_(many);
  EXPECT_LE((many - expected).abs().max().item<double>(), 1e-6);
  EXPECT_THROW(softmax_lastdim_(at::randn({4, 6}).t()), BadInput);
  EXPECT_THROW(softmax_lastdim_(at::randn({4, 6}, at::kDouble)), BadInput);
}

}  // namespace
}  // namespace vitprobe
