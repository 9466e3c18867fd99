#pragma once
// Tiny dataset files written by the data tests: IDX (raw and gzip), CIFAR-10/100 and STL-10 binaries,
// ImageFolder trees of PPM/PGM files. Pixel values encode (item, position, channel) so that layout errors show.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "image/image.h"

namespace vitprobe::test {

/// A fresh folder under $TMPDIR (or /tmp), removed with everything inside when the object goes.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/vitprobe_data_XXXXXX";
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& file, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(std::filesystem::path(file).parent_path());
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + file);
}

inline void write_gzip(const std::string& file, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(std::filesystem::path(file).parent_path());
  gzFile out = gzopen(file.c_str(), "wb");
  if (!out) throw std::runtime_error("cannot write " + file);
  gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(out);
}

inline void append_big_endian(std::vector<uint8_t>& bytes, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(value >> shift));
}

/// Pixel value of item `item` at byte position `position` of its stored layout.
inline uint8_t pattern(int64_t item, int64_t position) {
  return static_cast<uint8_t>((item * 37 + position * 11) % 251);
}

/// IDX3 images (n x rows x cols) and IDX1 labels.
inline std::vector<uint8_t> idx_images(int n, int rows, int cols) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, 0x03};
  append_big_endian(bytes, n);
  append_big_endian(bytes, rows);
  append_big_endian(bytes, cols);
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < rows * cols; ++p) bytes.push_back(pattern(i, p));
  }
  return bytes;
}

inline std::vector<uint8_t> idx_labels(const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, 0x01};
  append_big_endian(bytes, static_cast<uint32_t>(labels.size()));
  bytes.insert(bytes.end(), labels.begin(), labels.end());
  return bytes;
}

/// Labels 0, 1, ..., 9, 0, 1, ... for n items.
inline std::vector<uint8_t> cyclic_labels(int n, int n_classes = 10) {
  std::vector<uint8_t> labels;
  for (int i = 0; i < n; ++i) labels.push_back(static_cast<uint8_t>(i % n_classes));
  return labels;
}

/// Writes train and t10k IDX files (gzip when `gzip`) of 28x28 images into `dir`.
inline void write_idx_dataset(const std::string& dir, int n_train, int n_val, bool gzip) {
  auto write = gzip ? write_gzip : write_bytes;
  const std::string suffix = gzip ? ".gz" : "";
  write(dir + "/train-images-idx3-ubyte" + suffix, idx_images(n_train, 28, 28));
  write(dir + "/train-labels-idx1-ubyte" + suffix, idx_labels(cyclic_labels(n_train)));
  write(dir + "/t10k-images-idx3-ubyte" + suffix, idx_images(n_val, 28, 28));
  write(dir + "/t10k-labels-idx1-ubyte" + suffix, idx_labels(cyclic_labels(n_val)));
}

/// One CIFAR binary batch: records of label byte(s) then 3072 pixel bytes; item numbers start at `first`.
inline std::vector<uint8_t> cifar_batch(int n, int first, int n_classes, bool hundred) {
  std::vector<uint8_t> bytes;
  for (int i = 0; i < n; ++i) {
    const int item = first + i;
    if (hundred) bytes.push_back(static_cast<uint8_t>(item % 20));  // coarse label
    bytes.push_back(static_cast<uint8_t>(item % n_classes));
    for (int p = 0; p < 3072; ++p) bytes.push_back(pattern(item, p));
  }
  return bytes;
}

/// A binary PPM (P6) or, with grey, PGM (P5) file whose pixels follow pattern(item, ...).
inline void write_pnm(const std::string& file, int width, int height, int item, bool grey = false) {
  const std::string header = std::string(grey ? "P5" : "P6") + "\n" + std::to_string(width) + " " +
                             std::to_string(height) + "\n255\n";
  std::vector<uint8_t> bytes(header.begin(), header.end());
  const int channels = grey ? 1 : 3;
  for (int p = 0; p < width * height * channels; ++p) bytes.push_back(pattern(item, p));
  write_bytes(file, bytes);
}

}  // namespace vitprobe::test
