#pragma once
// Softmax over the last dimension, in place, for the attention scores of the fast path. AVX-512 where the CPU
// has it and the ISA cap allows it (checked at run time), plain C++ otherwise. libtorch 1.13's CPU softmax
// here runs an AVX2 kernel with a more accurate exp than softmax needs: 1.9x slower on ViT-S/16 attention
// (bench/block_stages_benchmark).
#include <ATen/core/Tensor.h>

namespace vitprobe {

/// x <- softmax(x, -1) for a contiguous fp32 CPU tensor of rank >= 1; each row stays in L1 through its three
/// passes (maximum, exp and sum, scale). Relative error within 2e-6 plus what rounding x - max to float costs
/// (tests compare at::softmax in float64); probabilities below the smallest normal float are 0; a row holding
/// a NaN gives NaN. `vectorized` false runs the portable loop even on AVX-512 CPUs (tests cover both).
void softmax_lastdim_(const at::Tensor& x, bool vectorized = true);

/// True when softmax_lastdim_ runs its AVX-512 loop on this CPU: it has avx512f and the ISA cap
/// (common/cpu_features.h) is AVX512_CORE or higher.
bool softmax_vectorized_available();

}  // namespace vitprobe
