#pragma once
// What this x86-64 CPU can run, and the cap a user or a test puts on it. Kernels never assume an instruction
// set: they ask here. The cap comes from VITPROBE_MAX_CPU_ISA, or else from oneDNN's own ONEDNN_MAX_CPU_ISA,
// with oneDNN's names (SSE41, AVX, AVX2, AVX512_CORE, AVX512_CORE_BF16, AVX512_CORE_AMX, ALL), so one variable
// caps vitprobe's kernels and oneDNN's alike.
#include <string>
#include <vector>

namespace vitprobe {

/// Instruction-set levels in oneDNN's order; each includes the ones before it.
enum class CpuIsa { Sse41, Avx, Avx2, Avx512Core, Avx512CoreBf16, Avx512CoreAmx, All };

/// The features of the CPU that decide which kernels run, as /proc/cpuinfo names them.
struct CpuFeatures {
  bool sse41 = false;
  bool avx = false;
  bool avx2 = false;
  bool avx512f = false;
  bool avx512_core = false;  // avx512f + bw + vl + dq: what oneDNN calls avx512_core
  bool avx512_bf16 = false;
  bool amx_bf16 = false;     // with amx_tile
  std::string model_name;

  /// The highest level this CPU reaches (before any cap).
  CpuIsa level() const;
  /// "avx2 avx512f ..." : the features above that the CPU has.
  std::vector<std::string> names() const;
};

/// Parses a /proc/cpuinfo text (its first processor's "flags" and "model name" lines).
CpuFeatures parse_cpuinfo(const std::string& cpuinfo);

/// The CPU's features (read once from /proc/cpuinfo).
const CpuFeatures& cpu_features();

/// Parses a cap in oneDNN's spelling, case-insensitive ("avx2", "AVX512_CORE_BF16", "ALL"); throws BadInput.
CpuIsa parse_cpu_isa(const std::string& name);

/// oneDNN's spelling of a level ("AVX2").
std::string cpu_isa_name(CpuIsa isa);

/// The cap in force: VITPROBE_MAX_CPU_ISA, else ONEDNN_MAX_CPU_ISA, else All. An unknown VITPROBE_MAX_CPU_ISA is
/// BadInput; an ONEDNN_MAX_CPU_ISA name vitprobe does not know counts as All (oneDNN reads it by itself).
CpuIsa cpu_isa_cap();

/// min(the CPU's level, the cap): what vitprobe's own kernels may use.
CpuIsa effective_cpu_isa();

/// True when the CPU has bf16 instructions and the cap allows them (avx512_bf16 or amx_bf16).
bool cpu_supports_bf16();

}  // namespace vitprobe
