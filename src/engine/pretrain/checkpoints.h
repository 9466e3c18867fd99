#pragma once
// What pretraining writes: the encoder alone as a timm-named safetensors file with its preprocessing and
// training configuration in the metadata (read back by load_model, timm and the PyTorch reference), and the
// full training state (every trained tensor, the optimizer moments, DINO's teacher and center, the progress)
// for --resume. Both are written atomically.
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "model/vit_encoder.h"
#include "pretrain/objectives.h"
#include "pretrain/optimizer.h"

namespace vitprobe {

/// Writes the encoder `weights` (timm keys; undefined slots skipped) in `dtype` (fp32, bf16 or fp16) with `metadata`.
void save_encoder(const std::string& file, VitWeights weights, at::ScalarType dtype,
                  const std::map<std::string, std::string>& metadata);

/// Writes the training state: the objective's trained tensors and buffers under their names, the AdamW moments
/// as "adamw.exp_avg.NAME" / "adamw.exp_avg_sq.NAME", and `progress` (JSON text) in the metadata.
void save_training_state(const std::string& file, PretrainObjective& objective, AdamW& optimizer,
                         const std::string& progress);

/// Reads a state written by save_training_state into the objective and optimizer (in place); every tensor must
/// be present with the same shape (else BadInput naming the file and the key). Returns the progress JSON text.
std::string load_training_state(const std::string& file, PretrainObjective& objective, AdamW& optimizer);

/// The state file that goes with an encoder file by default: "X.safetensors" -> "X.state.safetensors".
std::string default_state_file(const std::string& encoder_file);

}  // namespace vitprobe
