#pragma once
// Matrix products through oneDNN with weights converted and packed once at load time and bias, GELU,
// LayerScale and residual additions fused as post-ops. Built only when oneDNN is found (VITPROBE_WITH_ONEDNN);
// the libtorch reference path in VitEncoder is always there and tests compare the two.
#include <ATen/core/Tensor.h>

#include <memory>

namespace vitprobe {

/// True when this build has the oneDNN kernels.
bool onednn_available();

/// What is applied to x W^T + b before the optional scale and residual.
enum class Activation { None, Gelu };

/// A linear layer y = residual + scale * act(x W^T + b), with W packed for the CPU once.
class PackedLinear {
 public:
  /// `weight` (N, K) and `bias` (N) or undefined, any float dtype; computes in `dtype` (fp32 or bf16).
  PackedLinear(const at::Tensor& weight, const at::Tensor& bias, at::ScalarType dtype, Activation activation);

  /// x (M, K) in the compute dtype; `residual` (M, N) and `scale` (N) are optional (undefined = absent).
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& residual = {}, const at::Tensor& scale = {}) const;

  int64_t out_features() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

/// out = alpha * a @ b for 4-D tensors (B, H, M, K) x (B, H, K, N) with any strides; `out` (B, H, M, N)
/// contiguous, of dtype fp32 or the inputs' dtype.
void batched_matmul(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out, float alpha);

}  // namespace vitprobe
