#pragma once
// Checkpoints written by torch.save (PyTorch >= 1.6): a zip archive holding data.pkl, a pickle of the
// saved object, and one record per tensor storage under data/. The pickle is read by the restricted
// unpickler, so nothing in the file is executed.
#include <string>

#include "checkpoint/raw_checkpoint.h"

namespace vitprobe {

/// Reads a torch.save zip archive into its leaves (tensors and reported non-tensor values) in pickle order;
/// a damaged archive or a refused pickle throws BadInput naming the file.
RawCheckpoint read_torch_archive(const std::string& file);

}  // namespace vitprobe
