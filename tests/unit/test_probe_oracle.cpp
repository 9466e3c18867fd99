// The dino head (issue 16): patches weighted by a second encoder's (the oracle's) last-block [cls] attention,
// beyond_cls models_vit.py:337-350. The numerics against a PyTorch reference are in test_oracle_reference.cpp
// (ctest golden.probe.oracle); here the parsing, the refusals, the wiring and the cache key.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "common/errors.h"
#include "jobs/feature_setup.h"
#include "probe/feature_cache.h"
#include "probe/feature_source.h"
#include "probe/features.h"
#include "probe/heads.h"
#include "test_probe_fixtures.h"

namespace vitprobe {
namespace {

using probe_test::tiny_encoder;

std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const BadInput& error) {
    return error.what();
  }
  return "(no BadInput)";
}

TEST(ProbeOracle, ParsesTheDinoHead) {
  const auto spec = parse_head_spec("dino");
  EXPECT_EQ(spec.kind, HeadKind::Dino);
  EXPECT_EQ(spec.name, "dino");
  EXPECT_TRUE(spec.needs_oracle());
  EXPECT_TRUE(spec.trainable());
  EXPECT_FALSE(spec.learned_pooling());
  EXPECT_FALSE(spec.needs_attention());  // the encoder's own attention is not read
  EXPECT_EQ(required_features(spec), std::vector<std::string>{"dino"});
  EXPECT_TRUE(needs_oracle(required_features(parse_head_list("cls,dino"))));
  EXPECT_FALSE(needs_oracle(required_features(parse_head_list("cls,attn-mean"))));
  EXPECT_NE(message_of([] { parse_head_spec("dino:4"); }).find("takes no options"), std::string::npos);
  EXPECT_EQ(head_kind_name(HeadKind::Dino), "dino");
}

TEST(ProbeOracle, FeatureIsTheMeanOverHeadsAndPatchesOfAttentionTimesTokens) {
  TokenLayout layout;
  layout.embed_dim = 5;
  layout.num_prefix_tokens = 1;
  layout.grid_size = 3;
  layout.num_encoder_heads = 1;
  TokenLayout oracle_layout = layout;
  oracle_layout.num_prefix_tokens = 3;  // [cls] + 2 registers, left out of the weights
  oracle_layout.num_encoder_heads = 2;
  auto generator = at::detail::createCPUGenerator(3);
  const int64_t batch = 2, n = 9, heads = 2;
  const auto tokens = at::randn({batch, 1 + n, 5}, generator);
  const auto attention = at::softmax(at::randn({batch, heads, 3 + n, 3 + n}, generator) * 2, -1);
  const auto weights = oracle_cls_attention(attention, oracle_layout);
  ASSERT_EQ(weights.sizes(), (at::IntArrayRef{batch, n}));
  // Not renormalised: the registers' and [cls]'s share is missing from the sum.
  EXPECT_LT(weights.sum(1).max().item<double>(), 0.999);
  const auto features = compute_features(tokens, at::Tensor(), layout, {"dino"}, weights);
  // The official form, element by element: (1 / (H N)) sum_h sum_n a[h, 0, 3 + n] x[1 + n].
  for (int64_t b = 0; b < batch; ++b) {
    auto expected = at::zeros({5}, at::kDouble);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t p = 0; p < n; ++p) {
        expected += attention[b][h][0][3 + p].item<double>() * tokens[b][1 + p].to(at::kDouble);
      }
    }
    expected /= static_cast<double>(heads * n);
    EXPECT_LT((features.at("dino")[b].to(at::kDouble) - expected).abs().max().item<double>(), 1e-6);
  }
  EXPECT_NE(message_of([&] { compute_features(tokens, at::Tensor(), layout, {"dino"}); }).find("--oracle-model"),
            std::string::npos);
  TokenLayout no_cls = oracle_layout;
  no_cls.class_token = false;
  EXPECT_NE(message_of([&] { oracle_cls_attention(attention, no_cls); }).find("no [cls]"), std::string::npos);
}

TEST(ProbeOracle, OracleMustHaveClsAndTheEncodersGrid) {
  VitConfig encoder;
  encoder.img_size = 28;
  encoder.patch_size = 4;
  VitConfig oracle = encoder;
  EXPECT_NO_THROW(check_oracle_fits(oracle, encoder, "o.safetensors"));
  oracle.num_registers = 4;  // registers are fine: they are left out of the weights
  EXPECT_NO_THROW(check_oracle_fits(oracle, encoder, "o.safetensors"));
  oracle.class_token = false;
  const auto no_cls = message_of([&] { check_oracle_fits(oracle, encoder, "o.safetensors"); });
  EXPECT_NE(no_cls.find("--oracle-model o.safetensors: the oracle has no [cls] token"), std::string::npos) << no_cls;
  oracle.class_token = true;
  oracle.patch_size = 7;
  const auto grid = message_of([&] { check_oracle_fits(oracle, encoder, "o.safetensors"); });
  EXPECT_NE(grid.find("patch grid 4x4 (28 px, patch 7) differs from the encoder's 7x7 (28 px, patch 4)"),
            std::string::npos) << grid;
  oracle.img_size = 56;  // the same grid, but not the same images
  oracle.patch_size = 8;
  EXPECT_NE(message_of([&] { check_oracle_fits(oracle, encoder, "o.safetensors"); }).find("differs"), std::string::npos);
}

TEST(ProbeOracle, ExtractorRunsTheOracleOnTheSameImages) {
  const auto encoder = tiny_encoder(0, 1);
  const auto oracle = tiny_encoder(2, 5);  // another encoder, with registers
  EXPECT_NE(message_of([&] { FeatureExtractor(encoder, -1, false, {"dino"}); }).find("needs --oracle-model"),
            std::string::npos);
  const FeatureExtractor extractor(encoder, 0, false, {"cls", "dino"}, oracle);
  EXPECT_EQ(extractor.with_names({"dino"}).oracle(), oracle);
  auto generator = at::detail::createCPUGenerator(9);
  const auto images = at::randn({3, 3, 32, 32}, generator);
  const auto features = extractor(images);
  ForwardRequest request;
  request.final_tokens = false;
  request.block_outputs = {0};
  const auto tokens = encoder->forward(images, request).block_outputs.at(0);
  request.block_outputs = {};
  request.attention_blocks = {1};  // the oracle's last block
  const auto attention = oracle->forward(images, request).attention.at(1);
  const auto weights = attention.select(2, 0).slice(2, 3).mean(1);  // [cls] row, after [cls] + 2 registers
  const auto expected = (tokens.slice(1, 1) * weights.unsqueeze(2)).mean(1);
  EXPECT_LT((features.at("dino") - expected).abs().max().item<double>(), 1e-5);
  EXPECT_LT((oracle_weights(*oracle, images) - weights).abs().max().item<double>(), 1e-7);
  // A cls run does not need the oracle.
  EXPECT_NO_THROW(FeatureExtractor(encoder, -1, false, {"cls"}));
}

TEST(ProbeOracle, CacheKeyHoldsTheOracleOnlyWhenGiven) {
  FeatureCacheKey key;
  key.model_sha256 = "aa";
  key.data = "fashion-mnist";
  key.split = "train";
  const auto plain = key.digest();
  EXPECT_FALSE(key.to_json().contains("oracle_sha256"));  // keys of runs without an oracle are unchanged
  key.oracle_sha256 = "bb";
  const auto with_oracle = key.digest();
  EXPECT_EQ(key.to_json().at("oracle_sha256"), "bb");
  key.oracle_sha256 = "cc";
  EXPECT_NE(with_oracle, plain);
  EXPECT_NE(key.digest(), with_oracle);  // another oracle never reuses the dino feature
}

TEST(ProbeOracle, OracleOptionIsRefusedWithoutADinoHeadAndRequiredWithOne) {
  FeatureOptions options;
  EXPECT_NE(message_of([&] { check_oracle_option(parse_head_list("cls,dino"), options); }).find("needs --oracle-model"),
            std::string::npos);
  EXPECT_NO_THROW(check_oracle_option(parse_head_list("cls"), options));
  options.oracle_model = "dino.safetensors";
  EXPECT_NO_THROW(check_oracle_option(parse_head_list("cls,dino"), options));
  EXPECT_NE(message_of([&] { check_oracle_option(parse_head_list("cls"), options); }).find("only the dino head"),
            std::string::npos);
  LoadOptions load;
  load.format = "mae";
  load.arch = "vit_base_patch16";
  load.num_heads = 12;
  load.img_size = 64;
  load.dtype = "bf16";
  load.backend = "reference";
  const auto oracle = oracle_load_options(load);
  EXPECT_EQ(oracle.format, "auto");  // the oracle's own key map and architecture
  EXPECT_EQ(oracle.arch, "");
  EXPECT_EQ(oracle.num_heads, 0);
  EXPECT_EQ(oracle.img_size, 64);  // the same images, dtype and backend
  EXPECT_EQ(oracle.dtype, "bf16");
  EXPECT_EQ(oracle.backend, "reference");
}

TEST(ProbeOracle, HeadTrainsOnTheFeatureAndDrawsNoMap) {
  TokenLayout layout;
  layout.embed_dim = 8;
  layout.num_prefix_tokens = 1;
  layout.grid_size = 2;
  layout.num_encoder_heads = 2;
  ProbeHead head(parse_head_spec("dino"), layout, 3, 0);
  EXPECT_EQ(head.feature_dim(), 8);
  EXPECT_EQ(head.learned_pooling(), nullptr);
  FeatureMap features{{"dino", at::randn({4, 8})}};
  EXPECT_EQ(head.forward(features, true).sizes(), (at::IntArrayRef{4, 3}));
  EXPECT_NE(message_of([&] { pooling_weights(head, at::randn({4, 5, 8})); }).find("oracle"), std::string::npos);
}

}  // namespace
}  // namespace vitprobe
