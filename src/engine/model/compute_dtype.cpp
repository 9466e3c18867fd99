#include "model/compute_dtype.h"

#include <fstream>
#include <sstream>

namespace vitprobe {

bool cpuinfo_lists_bf16(const std::string& cpuinfo) {
  std::istringstream lines(cpuinfo);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') == std::string::npos ? line.size() : line.find(':') + 1));
    for (std::string flag; words >> flag;) {
      if (flag == "avx512_bf16" || flag == "amx_bf16") return true;
    }
  }
  return false;
}

bool cpu_supports_bf16() {
  static const bool supported = [] {
    std::ifstream in("/proc/cpuinfo");
    if (!in) return false;
    std::ostringstream text;
    text << in.rdbuf();
    return cpuinfo_lists_bf16(text.str());
  }();
  return supported;
}

std::string default_compute_dtype(const std::string& device) {
  if (device == "cuda") return "bf16";
  return cpu_supports_bf16() ? "bf16" : "fp32";
}

}  // namespace vitprobe
