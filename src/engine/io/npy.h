#pragma once
// Reading and writing numpy .npy files (format versions 1.0 to 3.0), the exchange format between
// vitprobe and the Python reference scripts.
#include <ATen/core/Tensor.h>

#include <string>

namespace vitprobe {

/// Reads a C-order .npy array of dtype <f4, <f8, <f2, <i8, <i4, |u1 or |b1 into a CPU tensor of the
/// same shape; throws BadInput "<file>: npy ..." for malformed files and IoError when unreadable.
at::Tensor read_npy(const std::string& file);

/// Writes `tensor` as a version 1.0 .npy file, atomically; float32, float64, int64, int32, uint8 and
/// bool are kept, float16 and bfloat16 are widened to float32, other dtypes throw BadInput.
void write_npy(const std::string& file, const at::Tensor& tensor);

}  // namespace vitprobe
