#pragma once
// MAE's per-sample random masking (models_mae.py random_masking): each sample's patches are ranked by
// uniform noise, the first len_keep = int(N * (1 - mask_ratio)) are kept, and restore_indices puts the
// kept-then-masked sequence back into patch order.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace vitprobe {

/// The masking of one batch.
struct PatchMasking {
  at::Tensor visible_patches;  // (B, K) int64: indices of the kept patches, in noise order
  at::Tensor restore_indices;  // (B, N) int64: argsort of the shuffle; gathering [kept, masked] with it restores order
  at::Tensor mask;             // (B, N) float32 in patch order: 0 kept, 1 masked
};

/// Number of visible patches MAE keeps: int(num_patches * (1 - mask_ratio)), truncated as Python's int().
int64_t num_visible_patches(int64_t num_patches, double mask_ratio);

/// Random masking of `batch` samples of `num_patches` patches; the noise of row b comes from a generator
/// seeded by (seed, b) only, so the result does not depend on threads. Throws BadInput unless 0 <= ratio < 1.
PatchMasking random_masking(int64_t batch, int64_t num_patches, double mask_ratio, uint64_t seed);

}  // namespace vitprobe
