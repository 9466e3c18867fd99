#pragma once
// The learned poolings: trainable modules that weight the patch tokens before the linear classifier.
// Each is written in the cheapest exact form (the attention-weighted token average is taken before any value
// projection, key projections are folded into the query), which equals the official modules' output up to
// float rounding; tests/golden/probe_reference.py holds the official forms they are checked against.
//
//   abmilp   beyond_cls ABMILPHead: scores = scorer(x [+ self-attention] [+ pe]), a = softmax over tokens,
//            out = sum a * values. scorer = Linear(D,1) (depth 1) or Linear(D,D) + act + Linear(D,1).
//            Parameters: pool.scorer.0.weight/bias [, pool.scorer.2.weight/bias],
//            with sa: pool.self_attn.qkv.weight (3D, D; no bias), pool.self_attn.proj.weight/bias.
//   ep:M     Efficient probing (Psomas et al.): queries q (1, M, D); a = softmax(q x^T / sqrt(D)) over patches,
//            out_m = W_v[m-th chunk of D/M rows] (sum_n a_mn x_n), outputs concatenated to D.
//            Parameters: pool.queries (1, M, D), pool.v.weight (D, D; no bias).
//   simpool  SimPool: q = W_q mean(x), k = W_k LN(x), a = softmax(q k^T / sqrt(D)), out = sum a LN(x).
//            Parameters: pool.norm.weight/bias (LayerNorm eps 1e-6), pool.wq.weight, pool.wk.weight (no bias).
//   mhca     Cross-attention with one learned query, H = encoder heads: q = W_q query + b_q, k = W_k x (a key
//            bias cannot change a softmax over keys, so there is none), v = W_v x + b_v;
//            out = concat_h sum_n a_hn v_hn. Parameters: pool.query (1, 1, D), pool.q.weight/bias,
//            pool.k.weight, pool.v.weight/bias.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "probe/features.h"
#include "probe/head_spec.h"

namespace vitprobe {

/// A named tensor, e.g. {"pool.v.weight", tensor}.
using NamedTensor = std::pair<std::string, at::Tensor>;

/// A trainable pooling over the tokens of the probed block.
class LearnedPooling {
 public:
  virtual ~LearnedPooling() = default;
  /// Width of the pooled vector.
  virtual int64_t output_dim() const = 0;
  /// Pooled features (B, F) from all tokens (B, T, D) of the probed block (prefix tokens included) and the
  /// patch tokens alone (B, N, D), contiguous (shared by every head of a batch: see add_patch_tokens).
  virtual at::Tensor forward(const at::Tensor& tokens, const at::Tensor& patches) const = 0;
  /// Weights over the patches: (B, n_patches) for abmilp and simpool, (B, queries, n_patches) for ep (M queries)
  /// and mhca (one row per encoder head). For abmilp content=all the prefix tokens' weights are dropped.
  virtual at::Tensor pooling_weights(const at::Tensor& tokens, const at::Tensor& patches) const = 0;
  /// The trainable parameters in a fixed order (handles: updating them in place updates the module).
  virtual std::vector<NamedTensor> parameters() const = 0;
};

/// Builds the pooling of `spec` (abmilp, ep, simpool, mhca) with PyTorch's default initialisation (Linear:
/// kaiming-uniform weights and uniform biases in +-1/sqrt(fan_in); queries normal(0, 0.02); LayerNorm 1, 0),
/// drawn from a generator seeded with `seed`. Parameters are float32 on `device`, without requires_grad.
std::unique_ptr<LearnedPooling> make_learned_pooling(const HeadSpec& spec, const TokenLayout& layout, uint64_t seed,
                                                     const at::Device& device);

}  // namespace vitprobe
