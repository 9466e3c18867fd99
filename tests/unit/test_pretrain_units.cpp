// Unit tests of the pretraining pieces: MAE masking and loss, patchify, the trainable encoder against the
// inference encoder, the schedules, multi-crop determinism, and the training-state round trip.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "checkpoint/loader.h"
#include "common/errors.h"
#include "pretrain/checkpoints.h"
#include "pretrain/mae.h"
#include "pretrain/masking.h"
#include "pretrain/multi_crop.h"
#include "pretrain/objectives.h"
#include "pretrain/optimizer.h"
#include "pretrain/trainable_vit.h"

namespace vitprobe {
namespace {

VitConfig small_config() {
  VitConfig config;
  config.img_size = 16;
  config.patch_size = 4;
  config.embed_dim = 32;
  config.depth = 2;
  config.num_heads = 4;
  config.mlp_hidden_dim = 64;
  return config;
}

TEST(PretrainMasking, KeepsExactlyTheVisibleCount) {
  EXPECT_EQ(num_visible_patches(196, 0.75), 49);
  EXPECT_EQ(num_visible_patches(49, 0.75), 12);  // int(12.25)
  EXPECT_EQ(num_visible_patches(10, 0.0), 10);
  const auto masking = random_masking(5, 49, 0.75, 3);
  EXPECT_EQ(masking.visible_patches.sizes(), at::IntArrayRef({5, 12}));
  EXPECT_EQ(masking.mask.sizes(), at::IntArrayRef({5, 49}));
  for (int64_t row = 0; row < 5; ++row) {
    EXPECT_EQ(masking.mask[row].sum().item<float>(), 37.0f);
    // The visible patches are distinct and are exactly the unmasked ones.
    std::set<int64_t> visible;
    for (int64_t k = 0; k < 12; ++k) visible.insert(masking.visible_patches[row][k].item<int64_t>());
    EXPECT_EQ(visible.size(), 12u);
    for (int64_t patch = 0; patch < 49; ++patch) {
      EXPECT_EQ(masking.mask[row][patch].item<float>() == 0.0f, visible.count(patch) == 1) << row << "," << patch;
    }
  }
  EXPECT_THROW(random_masking(1, 4, 1.0, 0), BadInput);
  EXPECT_THROW(random_masking(1, 4, 0.9, 0), BadInput);  // int(0.4) = 0 patches kept
}

TEST(PretrainMasking, UnshuffleRestoresPatchOrder) {
  const int64_t batch = 3, patches = 16;
  const auto masking = random_masking(batch, patches, 0.5, 11);
  // The shuffled order: kept patches, then the masked ones in noise order; restore_indices undoes it.
  auto shuffle = std::get<1>(masking.restore_indices.sort(true, 1, false));
  auto tokens = at::arange(patches).to(at::kFloat).unsqueeze(0).expand({batch, patches}).contiguous();
  auto shuffled = tokens.gather(1, shuffle);
  EXPECT_TRUE(shuffled.narrow(1, 0, 8).to(at::kLong).equal(masking.visible_patches));
  EXPECT_TRUE(shuffled.gather(1, masking.restore_indices).equal(tokens));
  // Same seed, same masks; another seed, other masks; rows differ from each other.
  EXPECT_TRUE(random_masking(batch, patches, 0.5, 11).visible_patches.equal(masking.visible_patches));
  EXPECT_FALSE(random_masking(batch, patches, 0.5, 12).visible_patches.equal(masking.visible_patches));
  EXPECT_FALSE(masking.visible_patches[0].equal(masking.visible_patches[1]));
}

TEST(PretrainMae, LossOnAHandComputedCase) {
  // One image, two patches of 4 values; patch 1 masked. Without norm_pix: MSE of patch 1 only.
  auto target = at::tensor({1.0f, 2.0f, 3.0f, 4.0f, 0.0f, 0.0f, 2.0f, 2.0f}).view({1, 2, 4});
  auto prediction = at::tensor({9.0f, 9.0f, 9.0f, 9.0f, 1.0f, 0.0f, 0.0f, 2.0f}).view({1, 2, 4});
  auto mask = at::tensor({0.0f, 1.0f}).view({1, 2});
  // (1 + 0 + 4 + 0) / 4 = 1.25
  EXPECT_FLOAT_EQ(mae_loss(target, prediction, mask, false).item<float>(), 1.25f);
  // norm_pix: patch 1 = (0, 0, 2, 2): mean 1, unbiased var 4/3, target = (-1, -1, 1, 1) / sqrt(4/3 + 1e-6).
  const double scale = 1.0 / std::sqrt(4.0 / 3.0 + 1e-6);
  const double expected =
      (std::pow(1 + scale, 2) + std::pow(scale, 2) + std::pow(scale, 2) + std::pow(2 - scale, 2)) / 4;
  EXPECT_NEAR(mae_loss(target, prediction, mask, true).item<double>(), expected, 1e-6);
}

TEST(PretrainMae, PatchifyFollowsMaeOrder) {
  // 1 image, 2 channels, 4x4, patch 2: patch (0,1) holds rows 0-1, columns 2-3, pixels (row, col, channel).
  auto images = at::arange(32).to(at::kFloat).view({1, 2, 4, 4});
  auto patches = patchify(images, 2);
  EXPECT_EQ(patches.sizes(), at::IntArrayRef({1, 4, 8}));
  const std::vector<float> expected = {2, 18, 3, 19, 6, 22, 7, 23};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(patches[0][1][i].item<float>(), expected[i]) << i;
}

TEST(PretrainEncoder, TrainableForwardEqualsInferenceEncoder) {
  const auto config = small_config();
  for (const auto init : {VitInit::Mae, VitInit::Dino}) {
    auto generator = make_generator(5);
    const auto weights = init_vit_weights(config, init, generator);
    auto images = at::randn({2, 3, 16, 16}, generator);
    at::NoGradGuard no_grad;
    const auto trained = encode_tokens(weights, config, images, at::Tensor(), at::kFloat);
    const VitEncoder encoder(config, detached_copy(weights), at::kFloat);
    const auto reference = encoder.forward(images, ForwardRequest{}).tokens;
    EXPECT_LE((trained - reference).abs().max().item<double>(), 1e-5);
    // Keeping every patch in order changes nothing; keeping a subset keeps those patches' positions.
    const auto all = at::arange(16).unsqueeze(0).expand({2, 16}).contiguous();
    EXPECT_LE((encode_tokens(weights, config, images, all, at::kFloat) - reference).abs().max().item<double>(), 1e-5);
  }
}

TEST(PretrainEncoder, MaePosEmbedIsFixedSinCosWithZeroClsRow) {
  const auto config = small_config();
  auto generator = make_generator(1);
  auto weights = init_vit_weights(config, VitInit::Mae, generator);
  EXPECT_FALSE(weights.pos_embed.requires_grad());
  EXPECT_EQ(weights.pos_embed[0][0].abs().sum().item<float>(), 0.0f);
  for (const auto& tensor : trainable_tensors(weights, "encoder.")) {
    EXPECT_NE(tensor.name, "encoder.pos_embed");
    EXPECT_EQ(tensor.weight_decay, tensor.tensor.dim() > 1) << tensor.name;
  }
}

TEST(PretrainEncoder, LocalCropsUseResizedPositionEmbeddings) {
  const auto config = small_config();
  auto generator = make_generator(2);
  const auto weights = init_vit_weights(config, VitInit::Dino, generator);
  auto images = at::randn({2, 3, 8, 8}, generator);
  auto tokens = encode_tokens(weights, config, images, at::Tensor(), at::kFloat);
  EXPECT_EQ(tokens.sizes(), at::IntArrayRef({2, 5, 32}));
  tokens.sum().backward();
  EXPECT_TRUE(weights.pos_embed.grad().defined());
}

TEST(PretrainEncoder, Bf16ComputeTrainsFp32MasterWeights) {
  const auto config = small_config();
  MaeTrainingOptions options;
  options.decoder = {16, 1, 2, 4.0};
  auto objective = make_mae_objective(config, options, 4, at::kBFloat16);
  auto generator = make_generator(6);
  const auto images = at::randn({2, 3, 16, 16}, generator);
  auto loss = objective->loss({images}, TrainingStep{});
  EXPECT_EQ(loss.scalar_type(), at::kFloat);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  loss.backward();
  for (const auto& tensor : objective->trainable()) {
    EXPECT_EQ(tensor.tensor.scalar_type(), at::kFloat) << tensor.name;
    ASSERT_TRUE(tensor.tensor.grad().defined()) << tensor.name;
    EXPECT_EQ(tensor.tensor.grad().scalar_type(), at::kFloat) << tensor.name;
    EXPECT_TRUE(tensor.tensor.grad().isfinite().all().item<bool>()) << tensor.name;
  }
}

TEST(PretrainSchedules, WarmupCosineByHand) {
  EXPECT_DOUBLE_EQ(warmup_cosine(1.0, 0.0, 0.0, 2.0, 10.0), 0.0);
  EXPECT_DOUBLE_EQ(warmup_cosine(1.0, 0.0, 1.0, 2.0, 10.0), 0.5);
  EXPECT_DOUBLE_EQ(warmup_cosine(1.0, 0.0, 2.0, 2.0, 10.0), 1.0);
  EXPECT_NEAR(warmup_cosine(1.0, 0.0, 6.0, 2.0, 10.0), 0.5, 1e-12);
  EXPECT_NEAR(warmup_cosine(1.0, 0.1, 10.0, 2.0, 10.0), 0.1, 1e-12);
  EXPECT_DOUBLE_EQ(cosine_decay(0.996, 1.0, 0, 100), 0.996);
  EXPECT_NEAR(cosine_decay(0.996, 1.0, 50, 100), 0.998, 1e-12);
  EXPECT_DOUBLE_EQ(teacher_temperature(0.04, 0.07, 0, 0), 0.07);
  EXPECT_NEAR(teacher_temperature(0.04, 0.07, 4, 1), 0.05, 1e-12);
}

TEST(PretrainMultiCrop, CropsAreSeededAndSized) {
  MultiCropOptions options;
  options.global_size = 16;
  options.local_size = 8;
  options.num_local_crops = 3;
  const MultiCropAugmentation augmentation(options);
  ImageU8 image;
  image.width = 28;
  image.height = 28;
  image.pixels.resize(28 * 28 * 3);
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>((i * 37) % 251);
  EXPECT_EQ(augmentation.num_crops(), 5);
  for (int crop = 0; crop < 5; ++crop) {
    const auto first = augmentation.crop(image, crop, 42);
    EXPECT_EQ(first.width, crop < 2 ? 16 : 8);
    EXPECT_EQ(first.pixels, augmentation.crop(image, crop, 42).pixels);
  }
  EXPECT_NE(augmentation.crop(image, 0, 1).pixels, augmentation.crop(image, 0, 2).pixels);
}

TEST(PretrainCheckpoints, StateRoundTripRestoresEverything) {
  const auto config = small_config();
  DinoTrainingOptions options;
  options.head = {16, 8, 12};
  auto first = make_dino_objective(config, options, 4, 1, at::kFloat);
  auto second = make_dino_objective(config, options, 4, 2, at::kFloat);
  AdamW first_optimizer(first->trainable(), {});
  AdamW second_optimizer(second->trainable(), {});
  for (auto& tensor : first->trainable()) tensor.tensor.mutable_grad() = at::ones_like(tensor.tensor);
  first_optimizer.step(1e-3, 0.04);
  const auto dir = std::filesystem::temp_directory_path() / "vitprobe_pretrain_state_test";
  std::filesystem::create_directories(dir);
  const auto file = (dir / "state.safetensors").string();
  save_training_state(file, *first, first_optimizer, "{\"x\": 1}");
  EXPECT_EQ(load_training_state(file, *second, second_optimizer), "{\"x\": 1}");
  EXPECT_EQ(second_optimizer.step_count(), 1);
  const auto a = first->trainable(), b = second->trainable();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].tensor.equal(b[i].tensor)) << a[i].name;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(first_optimizer.second_moments()[i].equal(second_optimizer.second_moments()[i])) << a[i].name;
  }
  const auto buffers_a = first->buffers(), buffers_b = second->buffers();
  for (size_t i = 0; i < buffers_a.size(); ++i) EXPECT_TRUE(buffers_a[i].second.equal(buffers_b[i].second));
  // A state of another shape is refused with the key named.
  DinoTrainingOptions other = options;
  other.head.out_dim = 13;
  auto third = make_dino_objective(config, other, 4, 3, at::kFloat);
  AdamW third_optimizer(third->trainable(), {});
  try {
    load_training_state(file, *third, third_optimizer);
    FAIL() << "expected BadInput";
  } catch (const BadInput& error) {
    EXPECT_NE(std::string(error.what()).find("last_layer.weight_v"), std::string::npos) << error.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(PretrainCheckpoints, SavedEncoderLoadsWithMetadata) {
  const auto config = small_config();
  auto generator = make_generator(3);
  const auto weights = init_vit_weights(config, VitInit::Mae, generator);
  const auto dir = std::filesystem::temp_directory_path() / "vitprobe_pretrain_encoder_test";
  std::filesystem::create_directories(dir);
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const auto file = (dir / "encoder.safetensors").string();
    save_encoder(file, detached_copy(weights), dtype, {{"num_heads", "4"}, {"mean", "0.5,0.5,0.5"}});
    const auto loaded = load_model(file, LoadOptions{});
    EXPECT_EQ(loaded.encoder->config().num_heads, 4);
    EXPECT_EQ(loaded.encoder->config().img_size, 16);
    EXPECT_TRUE(loaded.report.ignored_keys.empty());
    const double tolerance = dtype == at::kFloat ? 0.0 : 1e-2;
    EXPECT_LE(
        (loaded.encoder->weights().blocks[1].fc2_weight - weights.blocks[1].fc2_weight).abs().max().item<double>(),
        tolerance);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vitprobe
