#include "data/file_bytes.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/errors.h"
#include "common/limits.h"
#include "io/input_file.h"

namespace vitprobe {

namespace {

// Inflates (or copies) at most `max_bytes` + 1 bytes of `file`: one more than allowed tells the caller
// that the data is longer, without reading the rest.
std::vector<uint8_t> read_at_most(const std::string& file, uint64_t max_bytes) {
  require_regular_file(file);
  // gzread passes files without a gzip header through unchanged (gzdirect), so one path reads both.
  gzFile stream = gzopen(file.c_str(), "rb");
  if (!stream) throw IoError(file + ": cannot open (" + std::strerror(errno) + ")");
  gzbuffer(stream, 1 << 18);
  std::vector<uint8_t> bytes;
  constexpr uint64_t kChunk = 1 << 22;
  const uint64_t wanted = max_bytes == UINT64_MAX ? max_bytes : max_bytes + 1;
  while (bytes.size() < wanted) {
    const size_t used = bytes.size();
    const auto chunk = static_cast<size_t>(std::min(kChunk, wanted - used));
    bytes.resize(used + chunk);
    const int got = gzread(stream, bytes.data() + used, static_cast<unsigned>(chunk));
    if (got < 0) {
      int code = 0;
      const std::string message = gzerror(stream, &code);
      gzclose(stream);
      if (code == Z_ERRNO) throw IoError(file + ": cannot read (" + std::strerror(errno) + ")");
      throw BadInput(file + ": corrupt gzip data (" + message + ")");
    }
    bytes.resize(used + static_cast<size_t>(got));
    if (got == 0) break;
  }
  // A gzip stream cut short reads as end of file with Z_BUF_ERROR set rather than as a failed read.
  int code = 0;
  const std::string message = gzerror(stream, &code);
  gzclose(stream);
  if (bytes.size() < wanted && code == Z_BUF_ERROR) throw BadInput(file + ": truncated gzip data (" + message + ")");
  if (code != Z_OK && code != Z_BUF_ERROR) throw BadInput(file + ": corrupt gzip data (" + message + ")");
  return bytes;
}

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& file, uint64_t max_bytes, const std::string& limit) {
  std::vector<uint8_t> bytes = read_at_most(file, max_bytes);
  if (bytes.size() > max_bytes) throw BadInput(file + ": data is longer than " + limit);
  return bytes;
}

std::vector<uint8_t> read_file_bytes(const std::string& file) {
  return read_file_bytes(file, kMaxDatasetFileBytes, "the limit of " + byte_count(kMaxDatasetFileBytes));
}

std::vector<uint8_t> read_file_head(const std::string& file, size_t n_bytes) {
  std::vector<uint8_t> bytes = read_at_most(file, n_bytes);
  bytes.resize(std::min(bytes.size(), n_bytes));
  return bytes;
}

std::string find_first_file(const std::vector<std::string>& folders, const std::vector<std::string>& names) {
  std::error_code error;
  for (const auto& folder : folders) {
    for (const auto& name : names) {
      const std::string path = (std::filesystem::path(folder) / name).string();
      if (std::filesystem::is_regular_file(path, error)) return path;
    }
  }
  return "";
}

std::vector<std::string> read_text_lines(const std::string& file) {
  require_regular_file(file, kMaxTextFileBytes, "text file");
  std::ifstream in(file);
  if (!in) throw IoError(file + ": cannot open");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    lines.push_back(line);
  }
  if (in.bad()) throw IoError(file + ": cannot read");
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

}  // namespace vitprobe
