#include "common/cpu_features.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "common/errors.h"

namespace vitprobe {
namespace {

const std::pair<const char*, CpuIsa> kIsaNames[] = {
    {"SSE41", CpuIsa::Sse41},
    {"AVX", CpuIsa::Avx},
    {"AVX2", CpuIsa::Avx2},
    {"AVX2_VNNI", CpuIsa::Avx2},  // oneDNN's in-between levels count as the level below them here
    {"AVX512_CORE", CpuIsa::Avx512Core},
    {"AVX512_CORE_VNNI", CpuIsa::Avx512Core},
    {"AVX512_CORE_BF16", CpuIsa::Avx512CoreBf16},
    {"AVX512_CORE_FP16", CpuIsa::Avx512CoreBf16},
    {"AVX512_CORE_AMX", CpuIsa::Avx512CoreAmx},
    {"ALL", CpuIsa::All},
    {"DEFAULT", CpuIsa::All},
};

std::string value_of(const std::string& line) {
  const auto colon = line.find(':');
  if (colon == std::string::npos) return {};
  auto value = line.substr(colon + 1);
  value.erase(0, value.find_first_not_of(" \t"));
  return value;
}

}  // namespace

CpuIsa CpuFeatures::level() const {
  if (avx512_core && amx_bf16) return CpuIsa::Avx512CoreAmx;
  if (avx512_core && avx512_bf16) return CpuIsa::Avx512CoreBf16;
  if (avx512_core) return CpuIsa::Avx512Core;
  if (avx2) return CpuIsa::Avx2;
  if (avx) return CpuIsa::Avx;
  return CpuIsa::Sse41;
}

std::vector<std::string> CpuFeatures::names() const {
  std::vector<std::string> out;
  const std::pair<bool, const char*> all[] = {{sse41, "sse4_1"},         {avx, "avx"},
                                              {avx2, "avx2"},            {avx512f, "avx512f"},
                                              {avx512_core, "avx512_core"}, {avx512_bf16, "avx512_bf16"},
                                              {amx_bf16, "amx_bf16"}};
  for (const auto& [has, name] : all) {
    if (has) out.emplace_back(name);
  }
  return out;
}

CpuFeatures parse_cpuinfo(const std::string& cpuinfo) {
  CpuFeatures features;
  std::set<std::string> flags;
  bool have_flags = false;
  std::istringstream lines(cpuinfo);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("model name", 0) == 0 && features.model_name.empty()) features.model_name = value_of(line);
    if (line.rfind("flags", 0) != 0 || have_flags) continue;
    have_flags = true;  // the first processor speaks for all of them
    std::istringstream words(value_of(line));
    for (std::string flag; words >> flag;) flags.insert(flag);
  }
  auto has = [&](const char* flag) { return flags.count(flag) > 0; };
  features.sse41 = has("sse4_1");
  features.avx = has("avx");
  features.avx2 = has("avx2") && has("fma");
  features.avx512f = has("avx512f");
  features.avx512_core = features.avx512f && has("avx512bw") && has("avx512vl") && has("avx512dq");
  features.avx512_bf16 = has("avx512_bf16");
  features.amx_bf16 = has("amx_bf16") && has("amx_tile");
  return features;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    std::ifstream in("/proc/cpuinfo");
    std::ostringstream text;
    if (in) text << in.rdbuf();
    return parse_cpuinfo(text.str());
  }();
  return features;
}

CpuIsa parse_cpu_isa(const std::string& name) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const auto& [spelling, isa] : kIsaNames) {
    if (upper == spelling) return isa;
  }
  throw BadInput("unknown CPU instruction-set cap '" + name +
                 "' (expected SSE41, AVX, AVX2, AVX512_CORE, AVX512_CORE_BF16, AVX512_CORE_AMX or ALL)");
}

std::string cpu_isa_name(CpuIsa isa) {
  for (const auto& [spelling, level] : kIsaNames) {
    if (level == isa) return spelling;
  }
  return "ALL";
}

CpuIsa cpu_isa_cap() {
  for (const char* variable : {"VITPROBE_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA"}) {
    const char* value = std::getenv(variable);
    if (value == nullptr || *value == '\0') continue;
    try {
      return parse_cpu_isa(value);
    } catch (const BadInput& e) {
      // Our own variable must be one of our names; oneDNN's may hold a name only oneDNN knows: it decides then.
      if (std::string(variable) == "ONEDNN_MAX_CPU_ISA") return CpuIsa::All;
      throw BadInput(std::string(variable) + ": " + e.what());
    }
  }
  return CpuIsa::All;
}

CpuIsa effective_cpu_isa() { return std::min(cpu_features().level(), cpu_isa_cap()); }

bool cpu_supports_bf16() { return effective_cpu_isa() >= CpuIsa::Avx512CoreBf16; }

}  // namespace vitprobe
