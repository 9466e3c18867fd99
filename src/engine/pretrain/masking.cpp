#include "pretrain/masking.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/errors.h"
#include "data/random.h"

namespace vitprobe {

int64_t num_visible_patches(int64_t num_patches, double mask_ratio) {
  return static_cast<int64_t>(static_cast<double>(num_patches) * (1.0 - mask_ratio));
}

PatchMasking random_masking(int64_t batch, int64_t num_patches, double mask_ratio, uint64_t seed) {
  if (!(mask_ratio >= 0.0 && mask_ratio < 1.0)) {
    throw BadInput("random_masking: mask ratio " + std::to_string(mask_ratio) + " must be in [0, 1)");
  }
  const int64_t keep = num_visible_patches(num_patches, mask_ratio);
  if (keep < 1) throw BadInput("random_masking: mask ratio " + std::to_string(mask_ratio) + " keeps no patch");
  auto noise = at::empty({batch, num_patches}, at::TensorOptions().dtype(at::kDouble));
  auto* values = noise.data_ptr<double>();
  for (int64_t row = 0; row < batch; ++row) {
    Rng rng(derive_seed(seed, /*stream=*/0x4d41u, static_cast<uint64_t>(row)));
    for (int64_t i = 0; i < num_patches; ++i) values[row * num_patches + i] = rng.uniform();
  }
  // Ascending noise: small is kept (as MAE); a stable sort makes ties (probability ~2^-53) deterministic.
  const auto shuffle = std::get<1>(noise.sort(/*stable=*/true, /*dim=*/1, /*descending=*/false));
  PatchMasking masking;
  masking.restore_indices = std::get<1>(shuffle.sort(/*stable=*/true, 1, false));
  masking.visible_patches = shuffle.narrow(1, 0, keep).contiguous();
  auto mask = at::ones({batch, num_patches}, at::TensorOptions().dtype(at::kFloat));
  mask.narrow(1, 0, keep).zero_();
  masking.mask = mask.gather(1, masking.restore_indices);
  return masking;
}

}  // namespace vitprobe
