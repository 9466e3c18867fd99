// Hostile images, datasets and loader failures (issue 18): sizes are checked from headers before any large
// allocation, inputs that are not regular files are refused, and no exception leaves a loader worker.
// Every input is built here; peak memory is read from getrusage (CTest runs each test in its own process).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cstdlib>
#include <new>

#include "common/errors.h"
#include "common/limits.h"
#include "data/file_bytes.h"
#include "data/loader.h"
#include "data/packed_dataset.h"
#include "image/image.h"
#include "image/transforms.h"
#include "io/npy.h"
#include "io/text_file.h"
#include "test_data_fixtures.h"

#include "test_stb_write.h"

namespace vitprobe {
namespace {

using test::append_big_endian;
using test::TempDir;
using test::write_bytes;
using test::write_pnm;

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Runs `action`, which must throw Error containing `word`, and returns how much it raised the peak RSS (MiB).
template <typename Error, typename Action>
double expect_refused(Action action, const std::string& word) {
  const double before = peak_rss_mib();
  try {
    action();
    ADD_FAILURE() << "expected an error containing '" << word << "'";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(word), std::string::npos) << error.what();
    EXPECT_EQ(std::string(error.what()).find('\n'), std::string::npos) << error.what();
  }
  return peak_rss_mib() - before;
}

std::vector<uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

// An 8x8 grey JPEG whose SOF0 header is patched to claim width x height: the data ends after one MCU.
std::vector<uint8_t> lying_jpeg(int width, int height) {
  std::vector<uint8_t> pixels(64, 128), jpeg;
  stbi_write_jpg_to_func([](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(context);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  }, &jpeg, 8, 8, 1, pixels.data(), 90);
  for (size_t i = 0; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      jpeg[i + 5] = static_cast<uint8_t>(height >> 8), jpeg[i + 6] = static_cast<uint8_t>(height);
      jpeg[i + 7] = static_cast<uint8_t>(width >> 8), jpeg[i + 8] = static_cast<uint8_t>(width);
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF0 marker";
  return jpeg;
}

// A PNG of its IHDR (8-bit RGB, width x height), an IDAT of a few bytes, and IEND: almost no pixel data.
std::vector<uint8_t> header_only_png(uint32_t width, uint32_t height) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  auto chunk = [&](const std::string& type, const std::vector<uint8_t>& data) {
    append_big_endian(png, static_cast<uint32_t>(data.size()));
    std::vector<uint8_t> body(type.begin(), type.end());
    body.insert(body.end(), data.begin(), data.end());
    png.insert(png.end(), body.begin(), body.end());
    append_big_endian(png, static_cast<uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
  };
  std::vector<uint8_t> ihdr;
  append_big_endian(ihdr, width);
  append_big_endian(ihdr, height);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
  chunk("IHDR", ihdr);
  chunk("IDAT", {0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01});  // zlib stream of one zero byte
  chunk("IEND", {});
  return png;
}

TEST(HostileImages, JpegDeclaringHugeSizeIsRefusedFromItsHeader) {
  TempDir dir;
  const std::vector<uint8_t> bomb = lying_jpeg(32000, 32000);
  EXPECT_LT(bomb.size(), 1000u);
  write_bytes(dir / "bomb.jpg", bomb);
  EXPECT_LT(expect_refused<BadInput>([&] { decode_image(dir / "bomb.jpg"); }, "178956970"), 64.0);
}

TEST(HostileImages, JpegPrematureEndIsAnError) {
  // 2000x2000 is under the pixel limit; the data ends after one MCU, which libjpeg only warns about.
  TempDir dir;
  write_bytes(dir / "short.jpg", lying_jpeg(2000, 2000));
  expect_refused<BadInput>([&] { decode_image(dir / "short.jpg"); }, "JPEG");
}

TEST(HostileImages, PngAndPnmHeadersAreCheckedBeforeAllocating) {
  TempDir dir;
  write_bytes(dir / "huge.png", header_only_png(32768, 32768));
  EXPECT_LT(expect_refused<BadInput>([&] { decode_image(dir / "huge.png"); }, "limit"), 64.0);
  write_bytes(dir / "empty.png", header_only_png(12000, 12000));  // under the pixel limit, but no data
  EXPECT_LT(expect_refused<BadInput>([&] { decode_image(dir / "empty.png"); }, "too small"), 64.0);
  write_bytes(dir / "huge.ppm", bytes_of("P6\n32768 32768\n255\n"));
  EXPECT_LT(expect_refused<BadInput>([&] { decode_image(dir / "huge.ppm"); }, "limit"), 64.0);
  write_bytes(dir / "empty.pgm", bytes_of("P5\n12000 12000\n255\nabc"));
  EXPECT_LT(expect_refused<BadInput>([&] { decode_image(dir / "empty.pgm"); }, "truncated"), 64.0);
  write_bytes(dir / "plain.ppm", bytes_of("P3\n12000 12000\n255\n1 2 3"));
  EXPECT_LT(expect_refused<BadInput>([&] { decode_image(dir / "plain.ppm"); }, "truncated"), 64.0);
}

TEST(HostileImages, PixelLimitFollowsTheEnvironment) {
  TempDir dir;
  write_pnm(dir / "small.ppm", 20, 20, 0);
  EXPECT_EQ(decode_image(dir / "small.ppm").width, 20);
  ::setenv(kMaxImagePixelsVariable, "399", 1);
  expect_refused<BadInput>([&] { decode_image(dir / "small.ppm"); }, kMaxImagePixelsVariable);
  ::setenv(kMaxImagePixelsVariable, "lots", 1);
  expect_refused<BadInput>([&] { decode_image(dir / "small.ppm"); }, "positive integer");
  ::unsetenv(kMaxImagePixelsVariable);
}

TEST(HostileImages, ResizeOutputIsBounded) {
  // A 1 x 32768 strip with its shorter side resized to 256 would be 256 x 8388608 (6 GB).
  ImageU8 strip{1, 32768, std::vector<uint8_t>(32768 * 3, 7)};
  EXPECT_LT(expect_refused<BadInput>([&] { resize_shorter_side(strip, 256, Interpolation::Bicubic); }, "output pixels"),
            64.0);
  EXPECT_THROW(resize(strip, 1 << 14, 1 << 14, Interpolation::Bilinear), BadInput);
}

TEST(HostileInputs, NotRegularFilesAreRefused) {
  TempDir dir;
  const std::string fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& file : {fifo, std::string("/dev/zero"), dir.path()}) {
    expect_refused<IoError>([&] { decode_image(file); }, "not a regular file");
    expect_refused<IoError>([&] { read_npy(file); }, "not a regular file");
    expect_refused<IoError>([&] { read_file_bytes(file); }, "not a regular file");
    expect_refused<IoError>([&] { read_lines(file); }, "not a regular file");
    expect_refused<IoError>([&] { read_text_lines(file); }, "not a regular file");
  }
}

// A gzip IDX file written in chunks (so the test itself never holds the body): `header` then `zeros` bytes.
void write_gzip_idx(const std::string& file, const std::vector<uint32_t>& header, size_t zeros) {
  gzFile out = gzopen(file.c_str(), "wb1");
  ASSERT_NE(out, nullptr);
  std::vector<uint8_t> head;
  for (uint32_t word : header) append_big_endian(head, word);
  gzwrite(out, head.data(), static_cast<unsigned>(head.size()));
  const std::vector<uint8_t> chunk(1 << 20, 0);
  for (size_t done = 0; done < zeros; done += chunk.size()) {
    gzwrite(out, chunk.data(), static_cast<unsigned>(std::min(chunk.size(), zeros - done)));
  }
  gzclose(out);
}

TEST(HostileDatasets, IdxBodyIsBoundedByItsHeader) {
  TempDir dir;
  // The header says 10 images of 28x28 (7840 bytes); the gzip body inflates to 256 MiB.
  write_gzip_idx(dir / "train-images-idx3-ubyte.gz", {0x803, 10, 28, 28}, 256u << 20);
  write_gzip_idx(dir / "train-labels-idx1-ubyte.gz", {0x801, 10}, 10);
  const double growth =
      expect_refused<BadInput>([&] { read_idx_dataset(dir.path(), false, false); }, "7840 bytes of data its IDX header");
  EXPECT_LT(growth, 64.0);
  // A header declaring 100 GB is refused before anything else is read.
  write_gzip_idx(dir / "train-images-idx3-ubyte.gz", {0x803, 100000, 1000, 1000}, 100);
  expect_refused<BadInput>([&] { read_idx_dataset(dir.path(), false, false); }, "over the limit of 768 MiB");
}

TEST(HostileDatasets, CifarBatchIsReadWithABound) {
  TempDir dir;
  write_gzip_idx(dir / "test_batch.bin", {}, (kMaxCifarRecordsPerFile + 100) * 3073);
  const double growth =
      expect_refused<BadInput>([&] { read_cifar_dataset(dir.path(), true, 10); }, "limit of 60000 records");
  // 184 MB of records at most, held in a vector that may double while the gzip stream is inflated. Under
  // AddressSanitizer (scripts/sanitize) shadow memory and the quarantine of freed blocks add to RSS (461 MB
  // measured), so the bound only holds in the normal build; the refusal itself is checked in both.
#if defined(__SANITIZE_ADDRESS__)
  (void)growth;
#else
  EXPECT_LT(growth, 400.0);
#endif
}

// Every item fails to load with `error`, or loads a 4x4 image.
class FailingDataset : public Dataset {
 public:
  explicit FailingDataset(std::exception_ptr error) : error_(std::move(error)) {}
  int64_t size() const override { return 8; }
  const std::vector<std::string>& class_names() const override { return names_; }
  int64_t label(int64_t) const override { return 0; }
  ImageU8 load(int64_t) const override {
    if (error_) std::rethrow_exception(error_);
    return ImageU8{4, 4, std::vector<uint8_t>(48, 1)};
  }
  std::string item_name(int64_t index) const override { return "/fake/" + std::to_string(index) + ".png"; }
  std::string format() const override { return "failing"; }
  std::string describe() const override { return "failing"; }

 private:
  std::exception_ptr error_;
  std::vector<std::string> names_ = {"a"};
};

TEST(HostileLoader, BatchAllocationFailureReachesTheCaller) {
  // 4 x 3 x 2^22 x 2^22 floats (768 TiB, beyond any address space) cannot be allocated: before, the worker
  // thread died with SIGABRT.
  FailingDataset dataset(nullptr);
  TransformOptions transform;
  transform.preprocess.resize = 1 << 22;
  transform.preprocess.crop = 1 << 22;
  LoaderOptions options;
  options.batch_size = 4;
  options.num_workers = 2;
  BatchLoader loader(dataset, ImageTransform(transform), options);
  loader.start_epoch(0);
  expect_refused<BadInput>([&] { loader.next(); }, "cannot allocate a batch");
  EXPECT_FALSE(loader.next().has_value());
}

TEST(HostileLoader, OutOfMemoryInAnItemIsOneLineBadInput) {
  FailingDataset dataset(std::make_exception_ptr(std::bad_alloc()));
  TransformOptions transform;
  transform.preprocess.resize = 4;
  transform.preprocess.crop = 4;
  BatchLoader loader(dataset, ImageTransform(transform), LoaderOptions{});
  loader.start_epoch(0);
  expect_refused<BadInput>([&] { loader.next(); }, "/fake/0.png: out of memory");
}

}  // namespace
}  // namespace vitprobe
