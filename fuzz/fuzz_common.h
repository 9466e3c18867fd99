#pragma once
// Shared by the fuzz targets: the readers take file names, so each input is written to a file in a private
// temporary folder first; vitprobe's own errors (BadInput, IoError) are the expected outcome of a bad input,
// anything else (another exception, a sanitizer report, a crash, a hang, an allocation over the memory limit)
// is a defect that libFuzzer records.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/errors.h"

namespace vitprobe_fuzz {

/// A private folder for this process's input files, removed at exit. In memory (/dev/shm) where there is
/// one: on a disk-backed /tmp writing the file costs more than reading it (a text target ran 5x slower);
/// VITPROBE_FUZZ_TMPDIR chooses another place.
class Scratch {
 public:
  Scratch() {
    std::string base = "/tmp";
    if (const char* chosen = std::getenv("VITPROBE_FUZZ_TMPDIR"); chosen && *chosen) {
      base = chosen;
    } else if (access("/dev/shm", W_OK | X_OK) == 0) {
      base = "/dev/shm";
    } else if (const char* tmp = std::getenv("TMPDIR"); tmp && *tmp) {
      base = tmp;
    }
    std::string pattern = base + "/vitprobe-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) {
      std::perror("vitprobe fuzz: mkdtemp");
      std::abort();
    }
    folder_ = pattern;
  }
  ~Scratch() {
    std::error_code ignored;
    std::filesystem::remove_all(folder_, ignored);
  }
  const std::string& folder() const { return folder_; }

  /// Writes `size` bytes at `data` to `name` inside the folder (sub-folders created); returns its path.
  std::string write(const std::string& name, const uint8_t* data, size_t size) const {
    const std::filesystem::path path = std::filesystem::path(folder_) / name;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) {
      std::perror("vitprobe fuzz: cannot write the input file");
      std::abort();
    }
    return path.string();
  }

  /// Removes everything in the folder (between inputs that write several files).
  void clear() const {
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(folder_, ignored)) {
      std::filesystem::remove_all(entry.path(), ignored);
    }
  }

 private:
  std::string folder_;
};

inline const Scratch& scratch() {
  static const Scratch instance;
  return instance;
}

/// Runs `read`; vitprobe's BadInput and IoError are expected and swallowed, anything else escapes.
template <class Read>
void expect_clean_errors(Read&& read) {
  try {
    read();
  } catch (const vitprobe::BadInput&) {
  } catch (const vitprobe::IoError&) {
  }
}

/// Splits an input into parts for targets that read several files: each part is a 4-byte little-endian
/// length then that many bytes (clamped to what is left); the last part present takes what follows its
/// length. Fewer parts than `max_parts` when the input runs out. make_corpus.py writes the same layout.
inline std::vector<std::string> split_parts(const uint8_t* data, size_t size, size_t max_parts) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (parts.size() < max_parts && at + 4 <= size) {
    uint32_t length = 0;
    std::memcpy(&length, data + at, 4);
    at += 4;
    const size_t left = size - at;
    const size_t take = parts.size() + 1 == max_parts ? left : std::min<size_t>(length, left);
    parts.emplace_back(reinterpret_cast<const char*>(data + at), take);
    at += take;
  }
  return parts;
}

inline std::string write_part(const std::string& name, const std::string& bytes) {
  return scratch().write(name, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace vitprobe_fuzz
