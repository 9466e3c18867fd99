#include "io/input_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/errors.h"
#include "common/limits.h"

namespace vitprobe {

uint64_t require_regular_file(const std::string& file) {
  struct stat info {};
  if (::stat(file.c_str(), &info) != 0) {
    throw IoError(file + ": cannot open (" + std::strerror(errno) + ")");
  }
  if (S_ISREG(info.st_mode)) return static_cast<uint64_t>(info.st_size);
  const char* kind = S_ISDIR(info.st_mode)    ? "a folder"
                     : S_ISCHR(info.st_mode)  ? "a character device"
                     : S_ISBLK(info.st_mode)  ? "a block device"
                     : S_ISFIFO(info.st_mode) ? "a FIFO"
                     : S_ISSOCK(info.st_mode) ? "a socket"
                                              : "not a regular file";
  throw IoError(file + ": cannot open (" + kind + ", not a regular file)");
}

uint64_t require_regular_file(const std::string& file, uint64_t max_bytes, const std::string& what) {
  const uint64_t size = require_regular_file(file);
  if (size > max_bytes) {
    throw BadInput(file + ": " + what + " of " + byte_count(size) + " is over the limit of " + byte_count(max_bytes));
  }
  return size;
}

std::vector<uint8_t> read_regular_file(const std::string& file, uint64_t max_bytes, const std::string& what) {
  require_regular_file(file, max_bytes, what);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": cannot open");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0);
  if (!in || size < 0) throw IoError(file + ": cannot read");
  if (static_cast<uint64_t>(size) > max_bytes) {
    throw BadInput(file + ": " + what + " of " + byte_count(static_cast<uint64_t>(size)) + " is over the limit of " +
                   byte_count(max_bytes));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), size);
  // The file may have shrunk since it was measured; what was read is all there is.
  bytes.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) throw IoError(file + ": cannot read");
  return bytes;
}

}  // namespace vitprobe
