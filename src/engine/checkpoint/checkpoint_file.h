#pragma once
// Opens a checkpoint whatever its format, chosen from the file's first bytes rather than its name.
#include <string>

#include "checkpoint/raw_checkpoint.h"

namespace vitprobe {

/// Reads a torch.save zip archive or a safetensors file; IoError when it cannot be opened, BadInput when
/// it is empty, in the legacy torch.save format, or neither format.
RawCheckpoint read_checkpoint_file(const std::string& file);

}  // namespace vitprobe
