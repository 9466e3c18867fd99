#include "model/compute_dtype.h"

#include "common/cpu_features.h"

namespace vitprobe {

std::string default_compute_dtype(const std::string& device) {
  if (device.rfind("cuda", 0) == 0) return "bf16";
  return cpu_supports_bf16() ? "bf16" : "fp32";
}

}  // namespace vitprobe
