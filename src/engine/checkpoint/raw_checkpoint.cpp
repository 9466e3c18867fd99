#include "checkpoint/raw_checkpoint.h"

namespace vitprobe {

std::string join_path(const std::vector<std::string>& path) {
  std::string joined;
  for (size_t i = 0; i < path.size(); ++i) {
    if (i > 0) joined += '.';
    joined += path[i];
  }
  return joined;
}

}  // namespace vitprobe
