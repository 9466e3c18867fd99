#include "checkpoint/zip_directory.h"

#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <vector>

#include "common/errors.h"
#include "common/limits.h"
#include "io/input_file.h"

namespace vitprobe {
namespace {

constexpr uint32_t kEndOfDirectory = 0x06054b50;
constexpr uint32_t kZip64EndOfDirectory = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint32_t kDirectoryEntry = 0x02014b50;
constexpr size_t kEndOfDirectoryBytes = 22;
constexpr size_t kMaxCommentBytes = 65535;

uint64_t little_endian(const std::string& bytes, size_t offset, size_t n_bytes) {
  uint64_t value = 0;
  for (size_t i = n_bytes; i-- > 0;) value = (value << 8) | static_cast<unsigned char>(bytes[offset + i]);
  return value;
}

// Names come from the file and are shown in one-line messages: control bytes masked, length capped.
std::string printable(const std::string& text) {
  std::string shown;
  for (char c : text.substr(0, 120)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
  return text.size() > 120 ? shown + "..." : shown;
}

bool escapes(const std::string& name) {
  if (name.empty() || name[0] == '/' || name[0] == '\\') return true;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find_first_of("/\\", start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0 && end - start == 2) return true;
    start = end + 1;
  }
  return false;
}

class DirectoryReader {
 public:
  // The file is checked to be a regular one before it is opened: opening a FIFO would block.
  explicit DirectoryReader(const std::string& file)
      : file_(file), size_(require_regular_file(file)), in_(file, std::ios::binary) {
    if (!in_) throw IoError(file + ": cannot open");
  }

  std::map<std::string, ZipEntry> read() {
    // The end-of-directory record sits in the last 22 bytes plus at most a 64 KiB comment.
    const uint64_t tail_size = std::min<uint64_t>(size_, kEndOfDirectoryBytes + kMaxCommentBytes);
    const std::string tail = read_at(size_ - tail_size, tail_size);
    size_t end = std::string::npos;
    for (size_t i = tail.size() >= kEndOfDirectoryBytes ? tail.size() - kEndOfDirectoryBytes + 1 : 0; i-- > 0;) {
      if (little_endian(tail, i, 4) == kEndOfDirectory) {
        end = i;
        break;
      }
    }
    if (end == std::string::npos) fail("no end-of-directory record (truncated or not a zip archive)");
    uint64_t n_entries = little_endian(tail, end + 10, 2);
    uint64_t directory_size = little_endian(tail, end + 12, 4);
    uint64_t directory_offset = little_endian(tail, end + 16, 4);
    const uint64_t end_offset = size_ - tail_size + end;
    if (end_offset >= 20 && little_endian(read_at(end_offset - 20, 20), 0, 4) == kZip64Locator) {
      const uint64_t zip64_offset = little_endian(read_at(end_offset - 20, 20), 8, 8);
      if (zip64_offset > end_offset || end_offset - zip64_offset < 56) fail("zip64 end-of-directory offset is corrupt");
      const std::string zip64 = read_at(zip64_offset, 56);
      if (little_endian(zip64, 0, 4) != kZip64EndOfDirectory) fail("zip64 end-of-directory record is missing");
      n_entries = little_endian(zip64, 32, 8);
      directory_size = little_endian(zip64, 40, 8);
      directory_offset = little_endian(zip64, 48, 8);
    }
    if (n_entries > kMaxZipEntries) {
      fail("has " + std::to_string(n_entries) + " entries, over the limit of " + std::to_string(kMaxZipEntries));
    }
    if (directory_offset > size_ || directory_size > size_ - directory_offset) fail("central directory is outside the file");
    const std::string directory = read_at(directory_offset, directory_size);
    std::map<std::string, ZipEntry> entries;
    size_t pos = 0;
    for (uint64_t i = 0; i < n_entries; ++i) {
      ZipEntry entry = parse_entry(directory, pos);
      check_entry(entry);
      const std::string name = entry.name;
      if (!entries.emplace(name, std::move(entry)).second) {
        fail("has two entries named '" + printable(name) + "' (refused: readers disagree on which one counts)");
      }
    }
    return entries;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw BadInput(file_ + ": zip archive " + what); }

  std::string read_at(uint64_t offset, uint64_t n_bytes) {
    if (offset > size_ || n_bytes > size_ - offset) fail("is truncated");
    std::string bytes(static_cast<size_t>(n_bytes), '\0');
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(bytes.data(), static_cast<std::streamsize>(n_bytes));
    if (!in_) throw IoError(file_ + ": cannot read");
    return bytes;
  }

  ZipEntry parse_entry(const std::string& directory, size_t& pos) {
    if (directory.size() - pos < 46 || little_endian(directory, pos, 4) != kDirectoryEntry) {
      fail("central directory is corrupt");
    }
    ZipEntry entry;
    entry.method = static_cast<uint16_t>(little_endian(directory, pos + 10, 2));
    entry.crc32 = static_cast<uint32_t>(little_endian(directory, pos + 16, 4));
    entry.compressed_size = little_endian(directory, pos + 20, 4);
    entry.size = little_endian(directory, pos + 24, 4);
    const size_t name_length = little_endian(directory, pos + 28, 2);
    const size_t extra_length = little_endian(directory, pos + 30, 2);
    const size_t comment_length = little_endian(directory, pos + 32, 2);
    entry.local_header_offset = little_endian(directory, pos + 42, 4);
    if (directory.size() - pos - 46 < name_length + extra_length + comment_length) fail("central directory is corrupt");
    entry.name = directory.substr(pos + 46, name_length);
    // Sizes and offset that do not fit 32 bits sit in the zip64 extra field (id 1), in this order.
    size_t extra = pos + 46 + name_length;
    const size_t extra_end = extra + extra_length;
    while (extra + 4 <= extra_end) {
      const uint64_t id = little_endian(directory, extra, 2);
      const size_t length = little_endian(directory, extra + 2, 2);
      if (extra + 4 + length > extra_end) fail("central directory has a corrupt extra field");
      if (id == 1) {
        size_t field = extra + 4;
        for (uint64_t* value : {&entry.size, &entry.compressed_size, &entry.local_header_offset}) {
          if (*value != 0xffffffffu) continue;
          if (field + 8 > extra + 4 + length) fail("central directory has a corrupt zip64 field");
          *value = little_endian(directory, field, 8);
          field += 8;
        }
      }
      extra += 4 + length;
    }
    pos = extra_end + comment_length;
    return entry;
  }

  void check_entry(const ZipEntry& entry) {
    const std::string where = "entry '" + printable(entry.name) + "'";
    if (escapes(entry.name)) fail(where + " has an absolute or '..' name (refused)");
    if (entry.method != 0 && entry.method != 8) {
      fail(where + " uses compression method " + std::to_string(entry.method) + " (only stored and deflated)");
    }
    if (entry.method == 0 && entry.compressed_size != entry.size) fail(where + " is stored but its sizes differ");
    // The local header (30 bytes and the name) and the data must both lie inside the file.
    if (entry.local_header_offset > size_ || entry.compressed_size > size_ - entry.local_header_offset) {
      fail(where + " claims " + std::to_string(entry.compressed_size) + " bytes beyond the end of the file");
    }
    if (entry.method == 8 && entry.size > kCompressionRatioExemptBytes &&
        entry.size / kMaxCompressionRatio > entry.compressed_size) {
      fail(where + " inflates " + std::to_string(entry.compressed_size) + " bytes to " + std::to_string(entry.size) +
           ", over the limit of " + std::to_string(kMaxCompressionRatio) + "x (a zip bomb?)");
    }
  }

  const std::string& file_;
  uint64_t size_ = 0;
  std::ifstream in_;
};

}  // namespace

std::map<std::string, ZipEntry> read_zip_directory(const std::string& file) { return DirectoryReader(file).read(); }

uint32_t zip_crc32(const void* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* bytes = static_cast<const Bytef*>(data);
  while (size > 0) {
    const auto chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, bytes, chunk);
    bytes += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace vitprobe
