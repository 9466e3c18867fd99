#include "jobs/machine.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "common/cpu_features.h"
#include "kernels/onednn_matmul.h"
#include "kernels/softmax.h"

namespace vitprobe {

nlohmann::json machine_description() {
  const auto& cpu = cpu_features();
  nlohmann::json out;
  out["cpu"] = {
      {"model", cpu.model_name},
      {"features", cpu.names()},
      {"level", cpu_isa_name(cpu.level())},
      {"cap", cpu_isa_name(cpu_isa_cap())},
      {"effective", cpu_isa_name(effective_cpu_isa())},
  };
  out["kernels"] = {
      {"softmax", softmax_vectorized_available() ? "avx512" : "portable"},
      {"matmul_fp32", onednn_available() ? "onednn" : "libtorch"},
      {"matmul_bf16", onednn_available() ? bf16_matmul_path() : "libtorch"},
      {"onednn", onednn_description()},
  };
  out["libtorch"] = TORCH_VERSION;
#ifdef VITPROBE_TORCH_CUDA
  const bool cuda_compiled = true;
#else
  const bool cuda_compiled = false;
#endif
  out["cuda"] = {{"compiled", cuda_compiled}, {"devices", static_cast<int>(torch::cuda::device_count())}};
  return out;
}

std::string machine_text() {
  const auto machine = machine_description();
  const auto& cpu = machine["cpu"];
  const auto& kernels = machine["kernels"];
  std::ostringstream text;
  text << "libtorch " << machine["libtorch"].get<std::string>() << ", CUDA "
       << (machine["cuda"]["compiled"].get<bool>() ? "compiled in" : "not compiled in") << ", "
       << machine["cuda"]["devices"].get<int>() << " CUDA device(s) visible\n";
  text << "cpu: " << cpu["model"].get<std::string>() << " (";
  bool first = true;
  for (const auto& feature : cpu["features"]) {
    text << (first ? "" : " ") << feature.get<std::string>();
    first = false;
  }
  text << "); level " << cpu["level"].get<std::string>() << ", cap " << cpu["cap"].get<std::string>() << "\n";
  text << "kernels: softmax " << kernels["softmax"].get<std::string>() << ", fp32 products "
       << kernels["matmul_fp32"].get<std::string>() << ", bf16 products " << kernels["matmul_bf16"].get<std::string>()
       << ", oneDNN " << kernels["onednn"].get<std::string>();
  return text.str();
}

}  // namespace vitprobe
