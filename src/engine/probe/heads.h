#pragma once
// A probe head: aggregation -> BatchNorm1d(affine=False, eps=1e-6) -> Linear(num_classes), the MAE linear
// probing head (main_linprobe.py) with the aggregation in front. Heads are small structs of at::Tensor
// parameters with explicit forward functions; the trainer owns their optimizers.
//
// Parameter and buffer names (as stored in head.safetensors, see probe/head_io.h):
//   pool.*                          the learned pooling (probe/poolers.h), absent for fixed aggregations
//   bn.running_mean, bn.running_var (F) float32, the BatchNorm statistics used at evaluation
//   linear.weight (C, F), linear.bias (C)
// F is D for every aggregation except cls+mean (2D) and ep with d_out=K (D / K).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "probe/features.h"
#include "probe/head_spec.h"
#include "probe/poolers.h"

namespace vitprobe {

/// How the classifier (linear.weight, linear.bias) starts.
enum class ClassifierInit {
  PyTorch,  // torch.nn.Linear's reset_parameters, as beyond_cls and efficient-probing leave it: weight
            // kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(F)), bias U(+-1/sqrt(F)) (the default)
  Mae,      // MAE main_linprobe.py: trunc_normal_(weight, std=0.01), bias 0
};

/// Parses "pytorch" or "mae"; throws BadInput naming the value otherwise.
ClassifierInit parse_classifier_init(const std::string& name);

/// One trainable probe head (any kind but knn).
class ProbeHead {
 public:
  /// A freshly initialised head: the pooling as in PyTorch, the classifier as `init` says, running mean 0 and
  /// variance 1; every draw seeded from `seed`, from libtorch's CPU generator in the order PyTorch draws them.
  /// Throws BadInput when the encoder cannot feed the head (see check_head_fits) or for knn.
  ProbeHead(HeadSpec spec, TokenLayout layout, int64_t num_classes, uint64_t seed, const at::Device& device = at::kCPU,
            ClassifierInit init = ClassifierInit::PyTorch);

  const HeadSpec& spec() const { return spec_; }
  const TokenLayout& layout() const { return layout_; }
  int64_t num_classes() const { return num_classes_; }
  /// Width F of the aggregated vector fed to BatchNorm.
  int64_t feature_dim() const { return feature_dim_; }

  /// The aggregated features (B, F) before BatchNorm. training: a pooling's own BatchNorm (aim) uses the batch
  /// statistics and updates its running ones; otherwise the running ones.
  at::Tensor pool(const FeatureMap& features, bool training = false) const;
  /// Logits (B, C). training: BatchNorm uses the batch statistics and updates its running ones
  /// (momentum 0.1, unbiased variance, as torch.nn.BatchNorm1d); otherwise the running statistics.
  at::Tensor forward(const FeatureMap& features, bool training);
  /// Training forward with BatchNorm statistics given from outside (see forward_synchronised): normalises
  /// `pooled` with the biased `variance`, updates the running statistics (unbiased over `count` items).
  at::Tensor classify(const at::Tensor& pooled, const at::Tensor& mean, const at::Tensor& variance, double count);

  /// The learned pooling, or null for fixed aggregations.
  const LearnedPooling* learned_pooling() const { return pooling_.get(); }

  /// Trainable parameters (requires_grad), pooling first, then linear.weight, linear.bias.
  std::vector<NamedTensor> parameters() const;
  /// The pooling's buffers (aim: pool.bn.running_mean, pool.bn.running_var), then bn.running_mean, bn.running_var.
  std::vector<NamedTensor> buffers() const;
  /// parameters() then buffers(): everything head.safetensors holds.
  std::vector<NamedTensor> state() const;
  /// Copies every tensor of state() from `tensors` (extra names are an error, as are missing ones and
  /// shape mismatches); `source` names the file in messages.
  void load_state(const std::map<std::string, at::Tensor>& tensors, const std::string& source);
  /// Number of trainable scalars.
  int64_t num_trainable_parameters() const;

 private:
  HeadSpec spec_;
  TokenLayout layout_;
  int64_t num_classes_;
  int64_t feature_dim_;
  std::unique_ptr<LearnedPooling> pooling_;
  at::Tensor running_mean_, running_var_;
  at::Tensor linear_weight_, linear_bias_;
};

/// Training logits of several heads whose BatchNorm uses the statistics of the global batch over all ranks,
/// as torch.nn.SyncBatchNorm: one all-reduce of every head's (sum, sum of squares, count) in float64, whose
/// backward sums the gradients over ranks (so each rank's loss reaches every rank's inputs). One collective
/// for all heads; the caller must run one backward through all returned logits (every rank alike). With one
/// rank it equals forward(features, true) of each head.
std::vector<at::Tensor> forward_synchronised(const std::vector<ProbeHead*>& heads, const FeatureMap& features,
                                             Communicator& communicator);

/// Per-patch pooling weights of a head, for overlaying on the image (`vitprobe maps --heads-dir`):
///   abmilp, simpool -> (B, n_patches); ep:M, ep_all:M -> (B, M, n_patches); aim, vjepa -> (B, heads, n_patches);
///   mean -> uniform (B, n_patches); center:N -> the central window (B, n_patches);
///   cattn:N, attn-mean, attn-minent -> computed from `attention` (B, heads, T, T) of the probed block.
/// `tokens` are the probed block's tokens as the head was trained on (after the final norm unless the head's
/// config says final_norm off): all tokens (B, T, D), or the patch tokens alone (B, n_patches, D) for heads
/// that do not read the prefix tokens. Rows sum to 1 (abmilp content=all and ep_all: the [cls] / prefix weights
/// are dropped, so less). Runs without autograd; aim's BatchNorm uses its running statistics. Throws BadInput
/// for cls, cls+mean and knn, which weight no patches, and for dino, whose weights are its oracle's.
at::Tensor pooling_weights(const ProbeHead& head, const at::Tensor& tokens, const at::Tensor& attention = {});

}  // namespace vitprobe
