#pragma once
// SHA-256 (FIPS 180-4) of files and strings: the model hash recorded in results and the key of cached features.
#include <string>

namespace vitprobe {

/// Lowercase hex SHA-256 of the bytes of `text`.
std::string sha256_hex(const std::string& text);

/// Lowercase hex SHA-256 of a file's contents, read in chunks; throws IoError naming the file.
std::string sha256_file(const std::string& file);

}  // namespace vitprobe
