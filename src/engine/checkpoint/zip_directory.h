#pragma once
// The central directory of a zip archive, read and checked before any record is inflated: names are
// unique and relative, sizes and offsets stay inside the file, and deflated records claim no more than a
// sane compression ratio. torch.save archives are then read record by record with these sizes in hand.
#include <cstdint>
#include <map>
#include <string>

namespace vitprobe {

/// One record of a zip archive as its central directory describes it.
struct ZipEntry {
  std::string name;
  uint16_t method = 0;            // 0 stored, 8 deflated
  uint32_t crc32 = 0;             // of the inflated bytes
  uint64_t compressed_size = 0;   // bytes in the file
  uint64_t size = 0;              // bytes once inflated
  uint64_t local_header_offset = 0;
};

/// Reads the central directory (zip64 included) of `file`; throws BadInput naming the file for a damaged
/// directory, more than kMaxZipEntries entries, two entries of one name, an absolute or "../" name, an
/// unsupported compression method, a record outside the file, or a deflated record whose inflated size is
/// more than kMaxCompressionRatio times its compressed size; IoError when it cannot be read.
std::map<std::string, ZipEntry> read_zip_directory(const std::string& file);

/// The CRC-32 of `size` bytes at `data`, as zip computes it.
uint32_t zip_crc32(const void* data, size_t size);

}  // namespace vitprobe
