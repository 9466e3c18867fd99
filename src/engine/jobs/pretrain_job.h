#pragma once
// `vitprobe pretrain mae|dino`: self-supervised pretraining of a ViT encoder on a dataset, with per-epoch
// atomic checkpoints, --resume, and the encoder saved as timm-named safetensors that load_model reads.
#include "jobs/pretrain_options.h"

namespace vitprobe {

/// Runs the training; writes the encoder and the state after every epoch. Throws BadInput / IoError.
PretrainResult run_pretrain_job(const PretrainOptions& options);

}  // namespace vitprobe
