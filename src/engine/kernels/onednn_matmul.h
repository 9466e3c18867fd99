#pragma once
// Matrix products through oneDNN with weights converted and packed once at load time and bias, GELU,
// LayerScale and residual additions fused as post-ops. Built only when oneDNN is found (VITPROBE_WITH_ONEDNN);
// the libtorch reference path in VitEncoder is always there and tests compare the two.
#include <ATen/core/Tensor.h>

#include <memory>

namespace vitprobe {

/// True when this build has the oneDNN kernels.
bool onednn_available();

/// How bf16 products run on this CPU under the ISA cap: "onednn-native" (bf16 instructions), "onednn-emulated"
/// (oneDNN's bf16 kernels on AVX512_CORE without them), "fp32-rounded" (oneDNN has no bf16 matmul below
/// AVX512_CORE: fp32 kernels on bf16-rounded weights and activations, results rounded to bf16), or "none" (no
/// oneDNN in this build). The first bf16 product says which on stderr, once.
std::string bf16_matmul_path();

/// oneDNN's version and the instruction set its kernels use here ("2.7.3, avx2"), or "none".
std::string onednn_description();

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
