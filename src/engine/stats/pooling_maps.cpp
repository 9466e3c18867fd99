#include "stats/pooling_maps.h"

#include <ATen/ATen.h>

#include "common/errors.h"

namespace vitprobe {

at::Tensor pool_patches(const at::Tensor& block_tokens, const at::Tensor& weights) {
  if (block_tokens.dim() != 3 || weights.dim() != 3 || weights.size(0) != block_tokens.size(0) ||
      weights.size(2) > block_tokens.size(1)) {
    throw BadInput("pool_patches: tokens (B, T, D) and weights (B, maps, patches <= T) do not match");
  }
  const int64_t n_patches = weights.size(2);
  const auto patches = block_tokens.narrow(1, block_tokens.size(1) - n_patches, n_patches).to(at::kFloat);
  return at::matmul(weights.to(at::kFloat), patches).flatten(1);  // (B, maps, D) -> (B, maps * D)
}

std::vector<std::unique_ptr<PoolingWeightSource>> load_pooling_heads(const std::string& heads_dir,
                                                                      const VitConfig& /*config*/) {
  throw BadInput(heads_dir + ": trained probe heads (AbMILP / EP / mhca pooling weights) are not available yet: "
                 "this build cannot read a probe head directory");
}

}  // namespace vitprobe
