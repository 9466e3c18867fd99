#pragma once
// Whole-file reads for the dataset readers: gzip-compressed files are inflated transparently, so IDX
// files work whether or not they carry the .gz of their download.
#include <cstdint>
#include <string>
#include <vector>

namespace vitprobe {

/// The bytes of `file`, inflated when it is gzip-compressed; throws IoError naming the file when it cannot
/// be opened and BadInput when its gzip stream is corrupt or truncated.
std::vector<uint8_t> read_file_bytes(const std::string& file);

/// The first of `names` that exists inside one of `folders` (searched in order), or "" when none does.
std::string find_first_file(const std::vector<std::string>& folders, const std::vector<std::string>& names);

/// Lines of a text file with trailing spaces and carriage returns removed and empty trailing lines dropped;
/// throws IoError naming the file when it cannot be read.
std::vector<std::string> read_text_lines(const std::string& file);

}  // namespace vitprobe
