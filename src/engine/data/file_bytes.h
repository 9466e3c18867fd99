#pragma once
// Whole-file reads for the dataset readers: gzip-compressed files are inflated transparently, so IDX
// files work whether or not they carry the .gz of their download.
#include <cstdint>
#include <string>
#include <vector>

namespace vitprobe {

/// The bytes of `file`, inflated when it is gzip-compressed; throws IoError naming the file when it cannot
/// be opened or is not a regular file, and BadInput when its gzip stream is corrupt or truncated, or when it
/// holds more than `max_bytes` (then the message says the data is longer than `limit`, e.g. "the limit of
/// 768 MiB"). Reading stops there, so a gzip bomb is never inflated beyond `max_bytes`.
std::vector<uint8_t> read_file_bytes(const std::string& file, uint64_t max_bytes, const std::string& limit);

/// The bytes of `file` (inflated when gzip-compressed) up to the limit of kMaxDatasetFileBytes.
std::vector<uint8_t> read_file_bytes(const std::string& file);

/// The first `n_bytes` of `file` (inflated when gzip-compressed), fewer when the data is shorter: enough to
/// check a header before the body is read.
std::vector<uint8_t> read_file_head(const std::string& file, size_t n_bytes);

/// The first of `names` that exists inside one of `folders` (searched in order), or "" when none does.
std::string find_first_file(const std::vector<std::string>& folders, const std::vector<std::string>& names);

/// Lines of a text file with trailing spaces and carriage returns removed and empty trailing lines dropped;
/// throws IoError naming the file when it cannot be read.
std::vector<std::string> read_text_lines(const std::string& file);

}  // namespace vitprobe
