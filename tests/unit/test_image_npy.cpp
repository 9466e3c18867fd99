// Unit tests of image decoding, the preprocessing transforms and .npy reading/writing.
#include <ATen/Functions.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/errors.h"
#include "image/image.h"
#include "image/resize.h"
#include "image/transforms.h"
#include "io/npy.h"

#include "test_stb_write.h"

namespace vitprobe {
namespace {

namespace fs = std::filesystem;

const std::string kSampleDir = std::string(VITPROBE_SHARED_DIR) + "/data/imagenet-sample";
const std::string kSampleJpeg = kSampleDir + "/n01514668_10054.JPEG";

// A fresh folder per test, removed afterwards.
class ImageNpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("vitprobe_image_npy_" + std::to_string(::getpid()) + "_" + info->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string write_bytes(const std::string& name, const std::string& bytes) const {
    std::ofstream(path(name), std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path(name);
  }

  fs::path dir_;
};

std::string read_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Expects `action` to throw BadInput whose message contains `word`.
template <typename Action>
void expect_bad_input(Action action, const std::string& word) {
  try {
    action();
    ADD_FAILURE() << "expected BadInput containing '" << word << "'";
  } catch (const BadInput& error) {
    EXPECT_NE(std::string(error.what()).find(word), std::string::npos) << error.what();
  }
}

// A .npy file with the given header dictionary and raw data, padded like numpy pads version 1.0.
std::string npy_bytes(const std::string& dict, const std::string& data) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xFF);
  bytes += static_cast<char>(header.size() >> 8);
  return bytes + header + data;
}

ImageU8 gradient_image(int width, int height) {
  ImageU8 image{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * height * 3)};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* pixel = &image.pixels[(static_cast<size_t>(y) * width + x) * 3];
      pixel[0] = static_cast<uint8_t>(x);
      pixel[1] = static_cast<uint8_t>(y);
      pixel[2] = static_cast<uint8_t>((x * 7 + y * 13) % 256);
    }
  }
  return image;
}

// ---------------------------------------------------------------------------------------------------
// npy

TEST_F(ImageNpyTest, NpyRoundTripsEveryDtype) {
  const std::vector<at::Tensor> tensors = {
      at::randn({3, 4, 5}),
      at::randn({7}, at::kDouble),
      at::arange(-6, 6, at::kLong).view({3, 4}),
      at::arange(-6, 6, at::kInt).view({2, 6}),
      at::arange(0, 256, at::kLong).to(at::kByte),
      at::arange(0, 10).remainder(3).eq(0),
      at::scalar_tensor(2.5),
      at::empty({0, 3}),
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string file = path("t" + std::to_string(i) + ".npy");
    write_npy(file, tensors[i]);
    EXPECT_EQ((read_bytes(file).find('\n') + 1) % 64, 0u) << "header must end on a 64-byte boundary";
    const at::Tensor back = read_npy(file);
    EXPECT_EQ(back.scalar_type(), tensors[i].scalar_type()) << i;
    EXPECT_EQ(back.sizes(), tensors[i].sizes()) << i;
    EXPECT_TRUE(at::equal(back, tensors[i])) << i;
  }
}

TEST_F(ImageNpyTest, NpyWritesReducedPrecisionAsFloat32AndReadsHalf) {
  const at::Tensor half = at::randn({4, 2}).to(at::kHalf);
  write_npy(path("h.npy"), half);
  const at::Tensor widened = read_npy(path("h.npy"));
  EXPECT_EQ(widened.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(widened, half.to(at::kFloat)));

  write_npy(path("b.npy"), at::ones({3}, at::kBFloat16));
  EXPECT_EQ(read_npy(path("b.npy")).scalar_type(), at::kFloat);

  const uint16_t one_and_minus_two[] = {0x3C00, 0xC000};
  const std::string file = write_bytes(
      "f2.npy", npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }",
                          std::string(reinterpret_cast<const char*>(one_and_minus_two), 4)));
  const at::Tensor read = read_npy(file);
  ASSERT_EQ(read.scalar_type(), at::kHalf);
  EXPECT_EQ(read[0].item<float>(), 1.0f);
  EXPECT_EQ(read[1].item<float>(), -2.0f);
}

TEST_F(ImageNpyTest, NpyReadsVersion2Headers) {
  std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }";
  while ((12 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x02\x00", 8);
  for (int i = 0; i < 4; ++i) bytes += static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  const int32_t values[] = {-3, 9};
  bytes += header + std::string(reinterpret_cast<const char*>(values), sizeof values);
  const at::Tensor read = read_npy(write_bytes("v2.npy", bytes));
  EXPECT_TRUE(at::equal(read, at::tensor(std::vector<int32_t>{-3, 9}).view({2, 1})));
}

TEST_F(ImageNpyTest, NpyRejectsMalformedFiles) {
  const std::string four_floats(16, '\0');
  const std::string bad_magic = write_bytes("magic.npy", "\x93NUMPX\x01\x00" + std::string(100, ' '));
  expect_bad_input([&] { read_npy(bad_magic); }, "magic");
  expect_bad_input([&] { read_npy(bad_magic); }, "npy");

  const std::string complex = write_bytes(
      "c8.npy", npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", four_floats));
  expect_bad_input([&] { read_npy(complex); }, "dtype");

  const std::string truncated = write_bytes(
      "short.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", four_floats));
  expect_bad_input([&] { read_npy(truncated); }, "shape");

  const std::string fortran = write_bytes(
      "f.npy", npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", four_floats));
  expect_bad_input([&] { read_npy(fortran); }, "fortran");

  const std::string garbled = write_bytes("g.npy", npy_bytes("{'descr': '<f4', 'shape': (2, 2)", four_floats));
  expect_bad_input([&] { read_npy(garbled); }, "npy");

  EXPECT_THROW(read_npy(path("missing.npy")), IoError);
  expect_bad_input([&] { write_npy(path("x.npy"), at::zeros({2}, at::kShort)); }, "dtype");
}

// ---------------------------------------------------------------------------------------------------
// Decoding

TEST_F(ImageNpyTest, DecodesPngDroppingAlphaAndExpandingGrey) {
  const uint8_t rgba[] = {10, 20, 30, 0, 40, 50, 60, 255, 70, 80, 90, 128, 1, 2, 3, 4};
  ASSERT_TRUE(stbi_write_png(path("rgba.png").c_str(), 2, 2, 4, rgba, 8));
  const ImageU8 image = decode_image(path("rgba.png"));
  EXPECT_EQ(image.width, 2);
  EXPECT_EQ(image.height, 2);
  EXPECT_EQ(image.pixels, (std::vector<uint8_t>{10, 20, 30, 40, 50, 60, 70, 80, 90, 1, 2, 3}));

  const uint8_t grey[] = {0, 100, 200};
  ASSERT_TRUE(stbi_write_png(path("grey.png").c_str(), 3, 1, 1, grey, 3));
  EXPECT_EQ(decode_image(path("grey.png")).pixels, (std::vector<uint8_t>{0, 0, 0, 100, 100, 100, 200, 200, 200}));
}

TEST_F(ImageNpyTest, DecodesPpmAndPgm) {
  const std::string p6 = write_bytes("a.ppm", std::string("P6\n# comment\n2 1\n255\n") + "\x01\x02\x03\xFA\xFB\xFC");
  const ImageU8 rgb = decode_image(p6);
  EXPECT_EQ(rgb.width, 2);
  EXPECT_EQ(rgb.height, 1);
  EXPECT_EQ(rgb.pixels, (std::vector<uint8_t>{1, 2, 3, 250, 251, 252}));

  const std::string p5 = write_bytes("a.pgm", std::string("P5 1 2 255 ") + "\x07\x09");
  EXPECT_EQ(decode_image(p5).pixels, (std::vector<uint8_t>{7, 7, 7, 9, 9, 9}));

  const std::string p3 = write_bytes("plain.ppm", "P3 1 1 15 15 0 3");
  EXPECT_EQ(decode_image(p3).pixels, (std::vector<uint8_t>{255, 0, 51}));
}

TEST_F(ImageNpyTest, DecodesSampleJpeg) {
  const ImageU8 image = decode_image(kSampleJpeg);
  EXPECT_EQ(image.width, 500);
  EXPECT_EQ(image.height, 400);
  EXPECT_EQ(image.pixels.size(), 500u * 400u * 3u);
}

TEST_F(ImageNpyTest, RejectsCorruptImagesWithDecodeError) {
  const std::string jpeg = read_bytes(kSampleJpeg);
  ASSERT_GT(jpeg.size(), 1000u);
  expect_bad_input([&] { decode_image(write_bytes("head.jpg", jpeg.substr(0, 200))); }, "decode");
  expect_bad_input([&] { decode_image(write_bytes("half.jpg", jpeg.substr(0, jpeg.size() / 2))); }, "decode");

  std::mt19937 random(42);
  std::string noise(4096, '\0');
  for (char& byte : noise) byte = static_cast<char>(random() & 0xFF);
  expect_bad_input([&] { decode_image(write_bytes("noise.bin", noise)); }, "decode");
  expect_bad_input([&] { decode_image(write_bytes("noise.jpg", "\xFF\xD8\xFF" + noise)); }, "decode");
  expect_bad_input([&] { decode_image(write_bytes("noise.png", "\x89PNG\r\n\x1A\n" + noise)); }, "decode");
  expect_bad_input([&] { decode_image(write_bytes("empty.jpg", "")); }, "decode");

  const uint8_t pixels[12] = {};
  ASSERT_TRUE(stbi_write_png(path("ok.png").c_str(), 2, 2, 3, pixels, 6));
  const std::string png = read_bytes(path("ok.png"));
  expect_bad_input([&] { decode_image(write_bytes("cut.png", png.substr(0, png.size() - 20))); }, "decode");

  expect_bad_input([&] { decode_image(write_bytes("zero.ppm", "P6 0 4 255 ")); }, "decode");
  expect_bad_input([&] { decode_image(write_bytes("huge.ppm", "P6 40000 1 255 ")); }, "decode");
  expect_bad_input([&] { decode_image(write_bytes("cut.ppm", "P6 4 4 255 \x01\x02")); }, "decode");

  // A real JPEG whose frame header claims an absurd width.
  std::string wide = jpeg;
  for (size_t i = 2; i + 9 < wide.size(); ++i) {
    if (static_cast<uint8_t>(wide[i]) == 0xFF && (static_cast<uint8_t>(wide[i + 1]) & 0xF0) == 0xC0 &&
        static_cast<uint8_t>(wide[i + 1]) != 0xC4 && static_cast<uint8_t>(wide[i + 1]) != 0xCC) {
      wide[i + 7] = '\xEA';  // width 0xEA60 = 60000
      wide[i + 8] = '\x60';
      break;
    }
  }
  expect_bad_input([&] { decode_image(write_bytes("wide.jpg", wide)); }, "decode");

  EXPECT_THROW(decode_image(path("missing.jpg")), IoError);
}

// ---------------------------------------------------------------------------------------------------
// Transforms

TEST_F(ImageNpyTest, CenterCropRoundsHalfOffsetsToEven) {
  // Offsets (w - size) / 2: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 1.0 -> 1.
  const std::vector<std::pair<int, int>> width_and_left = {{3, 0}, {5, 2}, {7, 2}, {4, 1}};
  for (const auto& [width, left] : width_and_left) {
    const ImageU8 cropped = center_crop(gradient_image(width, width), 2);
    EXPECT_EQ(cropped.width, 2);
    EXPECT_EQ(cropped.pixels[0], left) << "width " << width;
    EXPECT_EQ(cropped.pixels[1], left) << "height " << width;
  }
}

TEST_F(ImageNpyTest, CenterCropPadsSmallImagesWithZeros) {
  ImageU8 image{2, 6, std::vector<uint8_t>(2 * 6 * 3, 200)};
  const ImageU8 cropped = center_crop(image, 5);
  ASSERT_EQ(cropped.pixels.size(), 5u * 5u * 3u);
  // Width 2 -> 5 pads 1 left and 2 right; height 6 crops from round(0.5) = 0.
  for (int x = 0; x < 5; ++x) {
    const bool inside = x == 1 || x == 2;
    EXPECT_EQ(cropped.pixels[x * 3], inside ? 200 : 0) << x;
    EXPECT_EQ(cropped.pixels[(4 * 5 + x) * 3], inside ? 200 : 0) << x;
  }
}

TEST_F(ImageNpyTest, ResizeToSameSizeIsIdentity) {
  const ImageU8 image = gradient_image(17, 9);
  for (Interpolation interpolation : {Interpolation::Bilinear, Interpolation::Bicubic}) {
    EXPECT_EQ(resize(image, 17, 9, interpolation).pixels, image.pixels);
    EXPECT_EQ(resize_shorter_side(image, 9, interpolation).pixels, image.pixels);
  }
}

TEST_F(ImageNpyTest, ResizeKeepsConstantImagesAndComputesShapes) {
  const ImageU8 flat{40, 30, std::vector<uint8_t>(40 * 30 * 3, 77)};
  for (Interpolation interpolation : {Interpolation::Bilinear, Interpolation::Bicubic}) {
    const ImageU8 smaller = resize(flat, 13, 7, interpolation);
    EXPECT_EQ(smaller.pixels, std::vector<uint8_t>(13 * 7 * 3, 77));
    const ImageU8 larger = resize(flat, 81, 50, interpolation);
    EXPECT_EQ(larger.pixels, std::vector<uint8_t>(81 * 50 * 3, 77));
  }
  // 500x333 -> short side 256, long int(256 * 500 / 333) = 384.
  const ImageU8 landscape = resize_shorter_side(gradient_image(500, 333), 256, Interpolation::Bicubic);
  EXPECT_EQ(landscape.width, 384);
  EXPECT_EQ(landscape.height, 256);
  const ImageU8 portrait = resize_shorter_side(gradient_image(175, 226), 224, Interpolation::Bilinear);
  EXPECT_EQ(portrait.width, 224);
  EXPECT_EQ(portrait.height, 289);

  EXPECT_THROW(resize(flat, 0, 5, Interpolation::Bilinear), BadInput);
  EXPECT_EQ(parse_interpolation("bicubic"), Interpolation::Bicubic);
  EXPECT_EQ(parse_interpolation("bilinear"), Interpolation::Bilinear);
  EXPECT_THROW(parse_interpolation("nearest"), BadInput);
}

TEST_F(ImageNpyTest, NormalizesToChannelFirstFloats) {
  const ImageU8 image{1, 2, {0, 51, 255, 102, 153, 204}};
  const at::Tensor tensor = to_normalized_tensor(image, {0.5f, 0.5f, 0.5f}, {0.5f, 0.25f, 2.0f});
  ASSERT_EQ(tensor.sizes(), (at::IntArrayRef{3, 2, 1}));
  EXPECT_EQ(tensor.scalar_type(), at::kFloat);
  EXPECT_FLOAT_EQ(tensor[0][0][0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(tensor[0][1][0].item<float>(), (0.4f - 0.5f) / 0.5f);
  EXPECT_FLOAT_EQ(tensor[1][0][0].item<float>(), (0.2f - 0.5f) / 0.25f);
  EXPECT_FLOAT_EQ(tensor[2][0][0].item<float>(), 0.25f);
  EXPECT_THROW(to_normalized_tensor(image, {0, 0, 0}, {1, 0, 1}), BadInput);
}

TEST_F(ImageNpyTest, LoadImageTensorProducesCropSizedTensor) {
  PreprocessOptions options;
  const at::Tensor tensor = load_image_tensor(kSampleJpeg, options);
  EXPECT_EQ(tensor.sizes(), (at::IntArrayRef{3, 224, 224}));
  EXPECT_TRUE(tensor.isfinite().all().item<bool>());
}

}  // namespace
}  // namespace vitprobe
