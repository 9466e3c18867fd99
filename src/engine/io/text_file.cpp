#include "io/text_file.h"

#include <fstream>

#include "common/errors.h"
#include "common/limits.h"
#include "io/input_file.h"

namespace vitprobe {

std::vector<std::string> read_lines(const std::string& file) {
  require_regular_file(file, kMaxTextFileBytes, "text file");
  std::ifstream in(file);
  if (!in) throw IoError(file + ": cannot open");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

}  // namespace vitprobe
