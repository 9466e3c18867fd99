#include "jobs/machine.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>
#include <cstdlib>
#include <sstream>
#ifdef VITPROBE_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include "common/cpu_features.h"
#include "kernels/onednn_matmul.h"
#include "kernels/softmax.h"

namespace vitprobe {
namespace {

bool cuda_compiled() {
#ifdef VITPROBE_TORCH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() { return cuda_compiled() ? static_cast<int>(torch::cuda::device_count()) : 0; }

}  // namespace

std::string device_problem(const std::string& device) {
  if (device == "cpu") return "";
  const std::string prefix = "cuda";
  if (device.compare(0, prefix.size(), prefix) != 0 ||
      (device.size() > prefix.size() &&
       (device[prefix.size()] != ':' || device.size() == prefix.size() + 1 || device.size() > prefix.size() + 4 ||
        device.find_first_not_of("0123456789", prefix.size() + 1) != std::string::npos))) {
    return "'" + device + "' is not a device (cpu, cuda or cuda:N)";
  }
  if (!cuda_compiled()) {
    return device + ": this vitprobe was built against a libtorch without CUDA (libtorch " +
           std::string(TORCH_VERSION) + "); rebuild against a CUDA-enabled PyTorch (README, GPU section)";
  }
  const int count = cuda_device_count();
  if (count == 0) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    return device + ": no CUDA device is visible on this machine (CUDA is compiled in" +
           (visible != nullptr ? std::string("; CUDA_VISIBLE_DEVICES='") + visible + "'" : std::string()) +
           "); use --device cpu";
  }
  const int index = device.size() > prefix.size() ? std::atoi(device.c_str() + prefix.size() + 1) : 0;
  if (index >= count) {
    return device + ": only " + std::to_string(count) + " CUDA device(s) visible (cuda:0 to cuda:" +
           std::to_string(count - 1) + ")";
  }
  return "";
}

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
  nlohmann::json cuda = {{"compiled", cuda_compiled()}, {"devices", cuda_device_count()}};
#ifdef VITPROBE_TORCH_CUDA
  cuda["toolkit"] = VITPROBE_TORCH_CUDA;
  nlohmann::json names = nlohmann::json::array();
  for (int index = 0; index < cuda_device_count(); ++index) names.push_back(at::cuda::getDeviceProperties(index)->name);
  cuda["names"] = names;
#endif
  out["cuda"] = cuda;
  return out;
}

std::string machine_text() {
  const auto machine = machine_description();
  const auto& cpu = machine["cpu"];
  const auto& kernels = machine["kernels"];
  std::ostringstream text;
  const auto& cuda = machine["cuda"];
  text << "libtorch " << machine["libtorch"].get<std::string>() << ", "
       << (cuda["compiled"].get<bool>() ? "CUDA " + cuda["toolkit"].get<std::string>() + " compiled in"
                                        : std::string("CUDA not compiled in"))
       << ", " << cuda["devices"].get<int>() << " CUDA device(s) visible";
  if (cuda.contains("names")) {
    for (const auto& name : cuda["names"]) text << "; " << name.get<std::string>();
  }
  text << "\n";
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
