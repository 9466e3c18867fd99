#pragma once
// The learned poolings: trainable modules that weight the patch tokens before the linear classifier.
// Each is written in the cheapest exact form (the attention-weighted token average is taken before any value
// projection, key projections are folded into the query, key biases that cannot change a softmax over keys are
// left out of it), which equals the official modules' output up to float rounding;
// tests/golden/probe_reference.py holds the official forms they are checked against.
//
//   abmilp   beyond_cls ABMILPHead: scores = scorer(x [+ self-attention] [+ pe]), a = softmax over tokens,
//            out = sum a * values. scorer = depth - 1 x (Linear(D,D) + act), then Linear(D,1).
//            Parameters: [pool.pos_embed (1, T', D), cond=pe: starts as the sin-cos table, trained,]
//            pool.scorer.0.weight/bias [, pool.scorer.2.weight/bias, ...],
//            with sa: pool.self_attn.qkv.weight (3D, D; no bias), pool.self_attn.proj.weight/bias.
//   ep:M     Efficient probing (Psomas et al., efficient-probing poolings/ep.py, num_heads 1, no v bias):
//            queries q (1, M, D); a = softmax(q x^T / sqrt(D)) over the bag x, out_m = W_v[m-th chunk of
//            D/(d_out M) rows] (sum_n a_mn x_n), outputs concatenated to D / d_out (option d_out, EP's --d_out).
//            The bag is the patches; for ep_all it is [cls] + patches (the EP repository's `_all` poolings,
//            "both" = cls then patches, registers left out as its DINOv2 wrapper does).
//            Parameters: pool.queries (1, M, D) (EP's cls_token), pool.v.weight (D / d_out, D; no bias).
//   simpool  SimPool: q = W_q mean(x), k = W_k LN(x), a = softmax(q k^T / sqrt(D)), out = sum a LN(x).
//            Parameters: pool.norm.weight/bias (LayerNorm eps 1e-6), pool.wq.weight, pool.wk.weight (no bias).
//   aim      The EP repository's AIM pooler (poolings/aim.py AttentionPoolingClassifier, num_queries 1,
//            qkv_bias False): x' = BatchNorm1d(D, affine=False, eps 1e-6) over the patches (statistics over
//            batch and tokens while training, the running ones at evaluation); H heads (option heads, EP's
//            --num_heads, default 16); the learned query enters without a projection:
//            a_h = softmax(q_h (W_k,h x')^T / sqrt(D/H)), out = concat_h W_v,h sum_n a_hn x'_n.
//            Parameters: pool.cls_token (1, 1, D), pool.k.weight, pool.v.weight (no biases);
//            buffers pool.bn.running_mean, pool.bn.running_var (D).
//   vjepa    V-JEPA's AttentivePooler (facebookresearch/jepa src/models/attentive_pooler.py, num_queries 1,
//            complete_block, qkv_bias True, mlp_ratio 4, nn.LayerNorm eps 1e-5, exact GELU):
//            x' = norm1(x); q = W_q query + b_q; k, v = kv(x') split in halves; per head h
//            a_h = softmax(q_h k_h^T / sqrt(D/H)); y = proj(concat_h sum_n a_hn v_hn); q1 = query + y;
//            out = q1 + fc2(GELU(fc1(norm2(q1)))); then depth - 1 self-attention Blocks on the query token
//            (with one token its attention is 1: y = proj(v(norm1(q)))). proj=off leaves the output
//            projection out, as facebookresearch/jepa's CrossAttention.forward does since commit a0517b4
//            (the efficient-probing copy in poolings/jepa/modules.py applies it: the default).
//            Parameters under pool.: query_tokens (1, 1, D), cross_attention_block.{norm1, xattn.q,
//            xattn.kv, xattn.proj (proj=on), norm2, mlp.fc1, mlp.fc2}.{weight, bias}, and per extra block
//            blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.{weight, bias}.
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
  /// `training` matters for aim only: its BatchNorm then uses the batch statistics and updates its buffers.
  virtual at::Tensor forward(const at::Tensor& tokens, const at::Tensor& patches, bool training) = 0;
  /// Weights over the patches, as at evaluation: (B, n_patches) for abmilp and simpool, (B, rows, n_patches)
  /// for ep (M queries), aim and vjepa (one row per head). For abmilp content=all and ep_all the prefix tokens'
  /// weights are dropped.
  virtual at::Tensor pooling_weights(const at::Tensor& tokens, const at::Tensor& patches) const = 0;
  /// The trainable parameters in a fixed order (handles: updating them in place updates the module).
  virtual std::vector<NamedTensor> parameters() const = 0;
  /// Buffers that are not trained but saved with the head (aim's BatchNorm statistics); none for the others.
  virtual std::vector<NamedTensor> buffers() const { return {}; }
};

/// Builds the pooling of `spec` (abmilp, ep, simpool, aim, vjepa) initialised as its official module: PyTorch's
/// defaults (Linear: kaiming-uniform weights and uniform biases in +-1/sqrt(fan_in); queries normal(0, 0.02);
/// LayerNorm 1, 0; BatchNorm statistics 0, 1), except vjepa, which follows AttentivePooler._init_weights
/// (weights and query normal(0, 0.02), biases 0, proj and fc2 weights divided by sqrt(2 layer)). Draws come from
/// a generator seeded with `seed`. Tensors are float32 on `device`, without requires_grad.
std::unique_ptr<LearnedPooling> make_learned_pooling(const HeadSpec& spec, const TokenLayout& layout, uint64_t seed,
                                                     const at::Device& device);

}  // namespace vitprobe
