#pragma once
// The machine a figure comes from: CPU model and the features that decide the kernels, the instruction-set cap,
// which kernels run (softmax, fp32 and bf16 products), the libtorch underneath and the CUDA devices it sees.
// `vitprobe --version` prints it as text, `vitprobe bench` puts it in its JSON.
#include <nlohmann/json_fwd.hpp>

#include <string>

namespace vitprobe {

/// The machine as JSON: {"cpu": {...}, "kernels": {...}, "libtorch": ..., "cuda": {...}}.
nlohmann::json machine_description();

/// The same, a few lines of text (for --version).
std::string machine_text();

/// Why `device` ("cpu", "cuda", "cuda:N") cannot be used here, or "" when it can: not a device name, no CUDA
/// compiled into this libtorch, no CUDA device visible, or an index beyond the visible devices. Every --device
/// option checks it before any work, so `--device cuda` on a machine without a GPU is a usage error.
std::string device_problem(const std::string& device);

}  // namespace vitprobe
