#pragma once
// Line-oriented text files (class-name lists, file lists).
#include <string>
#include <vector>

namespace vitprobe {

/// The lines of `file` without their line ends ("\n" or "\r\n"); throws IoError naming the file when it
/// cannot be opened.
std::vector<std::string> read_lines(const std::string& file);

/// One class name per line; no file (empty name): no names.
inline std::vector<std::string> read_class_names(const std::string& file) {
  return file.empty() ? std::vector<std::string>{} : read_lines(file);
}

}  // namespace vitprobe
