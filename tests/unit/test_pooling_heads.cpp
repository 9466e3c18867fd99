// Pooling maps of saved probe heads (stats/pooling_maps.h): what `maps --heads-dir` draws and `embed
// --features abmilp` embeds equals the head's own pooling on the same tokens.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "common/errors.h"
#include "probe/head_io.h"
#include "stats/pooling_maps.h"
#include "test_probe_fixtures.h"

namespace vitprobe {
namespace {

namespace fs = std::filesystem;

nlohmann::json config_for(const ProbeHead& head, int block, bool final_norm) {
  return {{"format", "vitprobe-head"}, {"version", 1}, {"head", head.spec().name},
          {"type", head_kind_name(head.spec().kind)}, {"options", spec_options_json(head.spec())},
          {"layout", layout_to_json(head.layout())}, {"num_classes", head.num_classes()},
          {"class_names", {"a", "b", "c"}}, {"feature_dim", head.feature_dim()},
          {"trainable_parameters", head.num_trainable_parameters()},
          {"encoder", {{"model", "tiny"}, {"img_size", 32}, {"dtype", "fp32"}, {"block", block}, {"final_norm", final_norm},
                       {"preprocess", {{"resize", 32}, {"crop", 32}, {"interpolation", "bicubic"},
                                       {"mean", {0.5, 0.5, 0.5}}, {"std", {0.5, 0.5, 0.5}}}}}},
          {"training", {{"base_lr", 0.1}, {"top1", 50.0}}}};
}

class PoolingHeads : public ::testing::Test {
 protected:
  void SetUp() override {
    encoder_ = probe_test::tiny_encoder();
    layout_ = TokenLayout::of(encoder_->config());
  }
  void save(const std::string& name, int block, bool final_norm) {
    ProbeHead head(parse_head_list(name).front(), layout_, 3, 7);
    save_head((dir_ / "heads" / head_folder_name(name)).string(), head.state(), config_for(head, block, final_norm));
  }

  probe_test::ScratchDir scratch_;
  fs::path dir_ = scratch_.path();
  std::shared_ptr<const VitEncoder> encoder_;
  TokenLayout layout_;
};

TEST_F(PoolingHeads, MapsAndPooledFeaturesAreTheHeadsOwn) {
  save("abmilp", 0, true);
  save("ep:4", 1, false);
  save("cls", 1, true);  // weights no patches: skipped
  // issue 16: one map per query (ep_all, the [cls] weight left out) or per pooler head (aim, vjepa).
  save("ep_all:2,d_out=2", 1, false);
  save("aim:heads=2", 1, false);
  save("vjepa:heads=4,depth=2", 1, false);
  const auto sources = load_pooling_heads(dir_.string(), encoder_);
  ASSERT_EQ(sources.size(), 5u);
  auto generator = at::detail::createCPUGenerator(3);
  const auto tokens = at::randn({4, layout_.num_tokens(), layout_.embed_dim}, generator);
  for (const auto& source : sources) {
    SCOPED_TRACE(source->name());
    const auto loaded = load_head((dir_ / "heads" / head_folder_name(source->name())).string());
    auto reference_tokens = tokens;
    if (source->name() == "abmilp") {  // trained with the final norm: the source applies it
      EXPECT_EQ(source->input_block(), 0);
      const auto& weights = encoder_->weights();
      reference_tokens = at::layer_norm(tokens, {layout_.embed_dim}, weights.norm_weight, weights.norm_bias,
                                        encoder_->config().norm_eps);
    } else {
      EXPECT_EQ(source->input_block(), 1);
      const std::map<std::string, size_t> maps = {
          {"ep:4", 4}, {"ep_all:2,d_out=2", 2}, {"aim:heads=2", 2}, {"vjepa:heads=4,depth=2", 4}};
      EXPECT_EQ(source->map_names().size(), maps.at(source->name()));
    }
    const auto expected = pooling_weights(*loaded.head, reference_tokens);
    const auto weights = source->patch_weights(tokens, {});
    ASSERT_EQ(weights.dim(), 3);
    EXPECT_EQ(weights.size(1), static_cast<int64_t>(source->map_names().size()));
    EXPECT_EQ(weights.size(2), layout_.num_patches());
    EXPECT_TRUE(at::allclose(weights.reshape(expected.sizes()), expected, 1e-5, 1e-6));
    const auto sums = weights.sum(-1);
    if (loaded.head->spec().reads_prefix_tokens()) {  // ep_all: the [cls] keeps a share
      EXPECT_TRUE((sums < 1).all().item<bool>());
    } else {
      EXPECT_TRUE(at::allclose(sums, at::ones({4, weights.size(1)}), 1e-5, 1e-5));
    }
    auto features = compute_features(reference_tokens, {}, layout_, {"tokens"});
    add_patch_tokens(features, layout_);
    EXPECT_TRUE(at::allclose(source->pooled(tokens, {}), loaded.head->pool(features), 1e-5, 1e-6));
  }
}

TEST_F(PoolingHeads, AttentionWeightedHeadsUseTheBlocksAttention) {
  save("attn-mean", 1, true);
  const auto sources = load_pooling_heads(dir_.string(), encoder_);
  ASSERT_EQ(sources.size(), 1u);
  EXPECT_TRUE(sources.front()->needs_attention());
  auto generator = at::detail::createCPUGenerator(4);
  const auto tokens = at::randn({2, layout_.num_tokens(), layout_.embed_dim}, generator);
  const auto attention = at::softmax(at::randn({2, layout_.num_encoder_heads, layout_.num_tokens(), layout_.num_tokens()},
                                               generator), -1);
  // attn-mean weights the patches by the [cls] row averaged over heads, renormalised over the patches.
  auto expected = attention.select(2, 0).mean(1).narrow(1, layout_.num_prefix_tokens, layout_.num_patches());
  expected = expected / expected.sum(-1, true);
  EXPECT_TRUE(at::allclose(sources.front()->patch_weights(tokens, attention).squeeze(1), expected, 1e-5, 1e-6));

  // Through a forward: the request asks for block 1's output and attention, the result feeds the head.
  ForwardRequest request;
  sources.front()->add_inputs_to(request);
  EXPECT_EQ(request.block_outputs, std::vector<int>{1});
  EXPECT_EQ(request.attention_blocks, std::vector<int>{1});
  const auto result = encoder_->forward(at::randn({2, 3, 32, 32}, generator), request);
  const auto direct = sources.front()->patch_weights(result.block_outputs.at(1), result.attention.at(1));
  EXPECT_TRUE(at::equal(sources.front()->patch_weights_of(result), direct));
  EXPECT_TRUE(at::equal(sources.front()->pooled_of(result), sources.front()->pooled(result.block_outputs.at(1), result.attention.at(1))));
}

TEST_F(PoolingHeads, NotesOtherPreprocessing) {
  save("abmilp", 0, true);  // trained with resize 32, crop 32, bicubic, mean = std = 0.5 (config_for)
  const auto sources = load_pooling_heads(dir_.string(), encoder_);
  PreprocessOptions same;
  same.resize = same.crop = 32;
  same.mean = same.std = {0.5f, 0.5f, 0.5f};
  EXPECT_TRUE(sources.front()->mismatches("any", same).empty());  // the config records no checkpoint hash
  for (int change = 0; change < 3; ++change) {
    PreprocessOptions other = same;
    if (change == 0) other.crop = 28;
    if (change == 1) other.interpolation = Interpolation::Bilinear;
    if (change == 2) other.mean[1] = 0.45f;
    const auto notes = sources.front()->mismatches("any", other);
    ASSERT_EQ(notes.size(), 1u) << "change " << change;
    EXPECT_NE(notes.front().find("other preprocessing"), std::string::npos) << notes.front();
  }
}

TEST_F(PoolingHeads, RefusesFoldersWithoutPoolingHeadsAndOtherLayouts) {
  save("cls", 1, true);
  try {
    load_pooling_heads(dir_.string(), encoder_);
    FAIL() << "expected BadInput";
  } catch (const BadInput& error) {
    EXPECT_NE(std::string(error.what()).find("no head that weights patches"), std::string::npos) << error.what();
  }
  fs::remove_all(dir_ / "heads");
  save("abmilp", 0, true);
  const auto other = probe_test::tiny_encoder(/*num_registers=*/2);
  EXPECT_THROW(load_pooling_heads(dir_.string(), other), BadInput);
}

}  // namespace
}  // namespace vitprobe
