#pragma once
// Random encoder weights of a given shape, for benchmarks and tests that need no trained checkpoint.
#include <cstdint>

#include "model/vit_encoder.h"

namespace vitprobe {

/// Weights for `config` drawn like timm's init (normal(0, 0.02) matrices and tokens, zero biases, unit
/// LayerNorm scales, LayerScale 0.1), fp32, deterministic for `seed`.
VitWeights random_vit_weights(const VitConfig& config, uint64_t seed);

}  // namespace vitprobe
