// The data pipeline's transforms: RandomResizedCrop's box sampler (its statistics against torchvision are a
// golden test), crop + resize, flip, and the presets' agreement with the single-image preprocessing.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "data/transforms.h"
#include "jobs/preprocess_settings.h"

namespace vitprobe {
namespace {

ImageU8 gradient_image(int width, int height) {
  ImageU8 image;
  image.width = width;
  image.height = height;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.pixels.push_back(static_cast<uint8_t>(x * 7 + y));
      image.pixels.push_back(static_cast<uint8_t>(y * 5));
      image.pixels.push_back(static_cast<uint8_t>((x * y) % 256));
    }
  }
  return image;
}

TEST(TransformBox, InsideImageWithinRangesAndSeeded) {
  ResizedCropRanges ranges;
  Rng rng(11);
  for (int draw = 0; draw < 2000; ++draw) {
    const CropBox box = sample_resized_crop_box(500, 375, ranges, rng);
    ASSERT_GT(box.width, 0);
    ASSERT_GT(box.height, 0);
    ASSERT_GE(box.top, 0);
    ASSERT_GE(box.left, 0);
    ASSERT_LE(box.left + box.width, 500);
    ASSERT_LE(box.top + box.height, 375);
    const double area = static_cast<double>(box.width) * box.height / (500.0 * 375.0);
    // Rounding w and h to integers moves area and ratio slightly outside the sampled ranges.
    EXPECT_GE(area, 0.075);
    EXPECT_LE(static_cast<double>(box.width) / box.height, 4.0 / 3.0 * 1.02);
    EXPECT_GE(static_cast<double>(box.width) / box.height, 3.0 / 4.0 / 1.02);
  }
  Rng first(5), second(5);
  for (int draw = 0; draw < 10; ++draw) {
    const CropBox a = sample_resized_crop_box(64, 48, ranges, first);
    const CropBox b = sample_resized_crop_box(64, 48, ranges, second);
    EXPECT_EQ(a.top, b.top);
    EXPECT_EQ(a.left, b.left);
    EXPECT_EQ(a.width, b.width);
    EXPECT_EQ(a.height, b.height);
  }
}

TEST(TransformBox, CentralFallbackForExtremeAspectRatios) {
  // 1000x10: every try needs h >= sqrt(800 / (4/3)) > 10, so torchvision falls back to the central crop
  // clamped to ratio 4/3: h = 10, w = round(13.33) = 13, centred.
  Rng rng(1);
  const CropBox wide = sample_resized_crop_box(1000, 10, ResizedCropRanges{}, rng);
  EXPECT_EQ(wide.height, 10);
  EXPECT_EQ(wide.width, 13);
  EXPECT_EQ(wide.top, 0);
  EXPECT_EQ(wide.left, (1000 - 13) / 2);
  const CropBox tall = sample_resized_crop_box(10, 1000, ResizedCropRanges{}, rng);
  EXPECT_EQ(tall.width, 10);
  EXPECT_EQ(tall.height, 13);  // round(10 / 0.75) = 13
  EXPECT_EQ(tall.top, (1000 - 13) / 2);
  // scale (1, 1) on a square image always gives the whole image.
  ResizedCropRanges whole;
  whole.scale_min = whole.scale_max = 1.0;
  whole.ratio_min = whole.ratio_max = 1.0;
  const CropBox all = sample_resized_crop_box(40, 40, whole, rng);
  EXPECT_EQ(all.width, 40);
  EXPECT_EQ(all.height, 40);
}

TEST(TransformResizedCrop, EqualsCropThenResizeAndChecksBox) {
  const ImageU8 image = gradient_image(50, 40);
  CropBox box;
  box.top = 3;
  box.left = 7;
  box.height = 20;
  box.width = 30;
  ImageU8 cropped;
  cropped.width = 30;
  cropped.height = 20;
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 30; ++x) {
      for (int c = 0; c < 3; ++c) cropped.pixels.push_back(image.pixels[((y + 3) * 50 + x + 7) * 3 + c]);
    }
  }
  EXPECT_EQ(resized_crop(image, box, 16, Interpolation::Bicubic).pixels,
            resize(cropped, 16, 16, Interpolation::Bicubic).pixels);
  box.left = 25;  // 25 + 30 > 50
  EXPECT_THROW(resized_crop(image, box, 16, Interpolation::Bicubic), BadInput);
}

TEST(TransformFlip, MirrorsRows) {
  const ImageU8 image = gradient_image(5, 3);
  const ImageU8 flipped = horizontal_flip(image);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 5; ++x) {
      for (int c = 0; c < 3; ++c) EXPECT_EQ(flipped.pixels[(y * 5 + x) * 3 + c], image.pixels[(y * 5 + 4 - x) * 3 + c]);
    }
  }
  EXPECT_EQ(horizontal_flip(flipped).pixels, image.pixels);
}

TEST(TransformEval, MatchesSingleImagePreprocessingBitForBit) {
  TransformOptions options;
  options.preprocess.resize = 72;
  options.preprocess.crop = 64;
  options.preprocess.mean = {0.5f, 0.45f, 0.4f};
  options.preprocess.std = {0.2f, 0.25f, 0.3f};
  const ImageTransform transform(options);
  for (auto [width, height] : {std::pair{97, 80}, std::pair{60, 90}, std::pair{72, 72}}) {
    const ImageU8 image = gradient_image(width, height);
    const at::Tensor ours = transform(image, 0);
    const at::Tensor reference = to_normalized_tensor(
        center_crop(resize_shorter_side(image, 72, Interpolation::Bicubic), 64), options.preprocess.mean,
        options.preprocess.std);
    EXPECT_TRUE(at::equal(ours, reference)) << width << "x" << height;
  }
}

TEST(TransformNormalize, Bfloat16IsRoundedFloat32) {
  TransformOptions options;
  options.preprocess.resize = options.preprocess.crop = 16;
  const ImageTransform transform(options);
  const ImageU8 square = gradient_image(16, 16);
  at::Tensor as_float = at::empty({3, 16, 16}, at::kFloat);
  at::Tensor as_bf16 = at::empty({3, 16, 16}, at::kBFloat16);
  transform.normalize_into(square, as_float.data_ptr<float>());
  transform.normalize_into(square, as_bf16.data_ptr<c10::BFloat16>());
  EXPECT_TRUE(at::equal(as_bf16, as_float.to(at::kBFloat16)));
  EXPECT_THROW(transform.normalize_into(gradient_image(15, 16), as_float.data_ptr<float>()), BadInput);
}

TEST(TransformTrain, SeededChoicesAndFlipRate) {
  TransformOptions options;
  options.preset = TransformPreset::Train;
  options.preprocess.crop = 24;
  const ImageTransform transform(options);
  const ImageU8 image = gradient_image(64, 48);
  TransformRecord first, second;
  EXPECT_TRUE(at::equal(transform(image, 99, &first), transform(image, 99, &second)));
  EXPECT_EQ(first.box.left, second.box.left);
  EXPECT_EQ(first.flipped, second.flipped);
  int flips = 0, distinct_boxes = 0;
  CropBox previous;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    TransformRecord record;
    const ImageU8 out = transform.geometric(image, seed, &record);
    ASSERT_EQ(out.width, 24);
    flips += record.flipped;
    distinct_boxes += record.box.left != previous.left || record.box.width != previous.width;
    previous = record.box;
    // The output is the recorded box resized, then flipped when recorded.
    const ImageU8 expected = resized_crop(image, record.box, 24, Interpolation::Bicubic);
    ASSERT_EQ(out.pixels, record.flipped ? horizontal_flip(expected).pixels : expected.pixels);
  }
  EXPECT_NEAR(flips / 400.0, 0.5, 0.1);  // 4 standard deviations of a fair coin over 400 draws
  EXPECT_GT(distinct_boxes, 300);
  EXPECT_THROW(parse_transform_preset("augment"), BadInput);
}

TEST(TransformMetadata, RoundTripsThroughPreprocessSettings) {
  PreprocessOptions options;
  options.resize = 248;
  options.crop = 224;
  options.interpolation = Interpolation::Bilinear;
  options.mean = {0.5f, 0.45f, 0.1f / 3.0f};
  options.std = {0.229f, 0.224f, 0.225f};
  const PreprocessOptions read_back = PreprocessSettings{}.resolve(preprocess_metadata(options), 999);
  EXPECT_EQ(read_back.resize, 248);
  EXPECT_EQ(read_back.crop, 224);
  EXPECT_EQ(read_back.interpolation, Interpolation::Bilinear);
  EXPECT_EQ(read_back.mean, options.mean);
  EXPECT_EQ(read_back.std, options.std);
}

}  // namespace
}  // namespace vitprobe
