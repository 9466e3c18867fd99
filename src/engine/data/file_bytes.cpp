#include "data/file_bytes.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/errors.h"

namespace vitprobe {

std::vector<uint8_t> read_file_bytes(const std::string& file) {
  // gzread passes files without a gzip header through unchanged (gzdirect), so one path reads both.
  gzFile stream = gzopen(file.c_str(), "rb");
  if (!stream) throw IoError(file + ": cannot open (" + std::strerror(errno) + ")");
  gzbuffer(stream, 1 << 18);
  std::vector<uint8_t> bytes;
  constexpr size_t kChunk = 1 << 22;
  for (;;) {
    const size_t used = bytes.size();
    bytes.resize(used + kChunk);
    const int got = gzread(stream, bytes.data() + used, static_cast<unsigned>(kChunk));
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
  if (code == Z_BUF_ERROR) throw BadInput(file + ": truncated gzip data (" + message + ")");
  if (code != Z_OK) throw BadInput(file + ": corrupt gzip data (" + message + ")");
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
