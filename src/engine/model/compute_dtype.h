#pragma once
// The compute dtype the analysis commands use when --dtype is not given: bf16 where the hardware runs it
// natively, fp32 elsewhere (emulated bf16 on a CPU without bf16 instructions is slower than fp32).
#include <string>

namespace vitprobe {

/// True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 among the CPU flags.
bool cpu_supports_bf16();

/// True when a cpuinfo text lists avx512_bf16 or amx_bf16 on a "flags" line (exposed for tests).
bool cpuinfo_lists_bf16(const std::string& cpuinfo);

/// "bf16" for device "cuda" and for a CPU with bf16 instructions, else "fp32".
std::string default_compute_dtype(const std::string& device);

}  // namespace vitprobe
