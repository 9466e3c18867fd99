#pragma once
// The compute dtype the analysis commands use when --dtype is not given: bf16 where the hardware runs it
// natively, fp32 elsewhere (bf16 without bf16 instructions is emulated and slower than fp32).
#include <string>

namespace vitprobe {

/// "bf16" for device "cuda" and for a CPU with bf16 instructions the ISA cap allows (common/cpu_features.h),
/// else "fp32".
std::string default_compute_dtype(const std::string& device);

}  // namespace vitprobe
