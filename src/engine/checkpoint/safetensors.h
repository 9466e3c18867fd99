#pragma once
// The safetensors format: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the raw little-endian tensor data.
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/raw_checkpoint.h"

namespace vitprobe {

/// Reads a safetensors file after validating its header against the file size; entries come in data order
/// and any malformed input throws BadInput whose message contains "safetensors".
RawCheckpoint read_safetensors(const std::string& file);

/// Writes `tensors` (in the given order) and `metadata` as a standard safetensors file, atomically.
void write_safetensors(const std::string& file, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace vitprobe
