#pragma once
// The information-flow statistics of "Beyond [cls]" (gmum/beyond_cls, models_vit.py forward_features and
// main_attention_stats.py), computed per image, block and head from a forward pass, and their mean and
// standard deviation over a dataset.
//
// With A the attention probabilities of one head (rows attend to columns), c the [cls] token and P the
// patch tokens (registers excluded), for each image:
//   cls_cls_attention              A[c,c]
//   pos_self_attention             mean_{i in P} A[i,i]
//   cls_cls_attention_adj_for_cls  A[c,c] / (sum_{j in P} A[c,j] + 1e-6)
//   pos_self_attention_adj_for_cls mean_{i in P} A[i,i] / (sum_{j in P} A[i,j] + 1e-6)
//   cls_pos_attention              mean_{j in P} A[c,j]
//   pos_cls_attention              mean_{i in P} A[i,c]
//   cls_pos_entropy                H(row c over P),   H(r) = -sum_j p_j log(p_j + 1e-6),
//   pos_pos_entropy                mean_{i in P} H(row i over P),   p_j = A[r,j] / (sum_{k in P} A[r,k] + 1e-6)
//   cls_magnitude                  |attn(norm1(x))_c| / (|x_c| + 1e-6): the attention branch after its output
//                                  projection and BEFORE LayerScale, over the residual it is added to, as the
//                                  official code measures it (gmum/beyond_cls models_simmim.py:139-146 takes
//                                  y_norm of y = attn(norm1(x)) and only then adds gamma_1 * y)
//   pos_magnitude                  mean_{i in P} of the same ratio
// Models with LayerScale also get the ratio of the branch as it is added, ls1 * attn(norm1(x)):
//   cls_magnitude_after_layer_scale, pos_magnitude_after_layer_scale (reg_magnitude_after_layer_scale)
// Models with registers R also get (reported apart, never mixed into the above):
//   cls_reg_attention  sum_{r in R} A[c,r]         pos_reg_attention  mean_{i in P} sum_{r in R} A[i,r]
//   reg_self_attention mean_{r in R} A[r,r]        reg_magnitude      mean_{r in R} of the norm ratio
// Models without [cls] get the statistics that do not involve it. The magnitudes have no head axis.
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "distributed/communicator.h"

namespace vitprobe {

/// Where the [cls] token, registers and patches sit in a token sequence ([cls], registers, patches), and
/// whether the blocks have LayerScale (then the after-LayerScale magnitudes are reported too). Not probe's
/// TokenLayout (probe/features.h): a separate name keeps the two apart in one program.
struct StatisticsLayout {
  bool class_token = true;
  int num_registers = 0;
  int num_patches = 0;
  bool layer_scale = false;

  int num_tokens() const { return (class_token ? 1 : 0) + num_registers + num_patches; }
  int first_register() const { return class_token ? 1 : 0; }
  int first_patch() const { return first_register() + num_registers; }
};

/// One statistic: its name and whether it has a value per head (attention) or per token only (magnitude).
struct StatisticInfo {
  std::string name;
  bool per_head = true;
  std::string unit;  // axis label: "attention", "entropy (nats)", "norm ratio"
  bool needs_class_token = false;
  bool needs_registers = false;
  bool needs_layer_scale = false;
};

/// The statistics a model with `layout` gets, in the official order (then the register statistics).
std::vector<StatisticInfo> statistics_for(const StatisticsLayout& layout);

/// Every statistic name any model can get, in display order.
std::vector<StatisticInfo> all_statistics();

/// Per-image values of one block: name -> (B, heads) for per-head statistics, (B) for magnitudes; float64.
using BlockStatistics = std::map<std::string, at::Tensor>;

/// Computes every statistic of `layout` for one block from its attention probabilities (B, heads, T, T),
/// the attention branch norms before LayerScale, the residual norms and (when layout.layer_scale) the branch
/// norms after LayerScale, each (B, T); in float64 whatever the input dtype.
BlockStatistics compute_block_statistics(const at::Tensor& attention, const at::Tensor& branch_norms,
                                         const at::Tensor& residual_norms, const StatisticsLayout& layout,
                                         const at::Tensor& branch_norms_after_layer_scale = at::Tensor());

/// Mean and population standard deviation (ddof 0) of a set of values.
struct MeanStd {
  double mean = 0, std = 0;
};

/// The summary of one statistic over a dataset, per block.
struct StatisticSummary {
  std::vector<MeanStd> head_mean;             // [block]: the head-averaged value, mean and std over images
  std::vector<std::vector<MeanStd>> per_head;  // [block][head]; empty for magnitudes
};

/// Accumulates per-image statistics over batches (Chan's parallel update of mean and squared deviations,
/// in float64), so a dataset's mean and std need one pass and constant memory.
class StatisticsAccumulator {
 public:
  StatisticsAccumulator(StatisticsLayout layout, int depth, int num_heads);

  /// Adds one batch of block `block` (values from compute_block_statistics). Every block must receive
  /// the same images.
  void add(int block, const BlockStatistics& values);

  /// Merges the accumulators of every rank (each saw a disjoint shard) into each rank's, with Chan's formula:
  /// two float64 all-reduces, first the counts and weighted sums, then the squared deviations about the
  /// global mean. Every rank must call it; afterwards each holds the statistics of the whole dataset.
  void all_reduce(Communicator& communicator);

  /// Images added to block 0.
  int64_t num_images() const { return count_.empty() ? 0 : count_.front(); }
  const std::vector<StatisticInfo>& statistics() const { return statistics_; }
  const StatisticsLayout& layout() const { return layout_; }

  /// Summaries of every statistic; throws BadInput when no image was added or blocks saw different counts.
  std::map<std::string, StatisticSummary> summarize() const;

 private:
  struct Moments {
    at::Tensor mean, m2;  // (heads) or (1); float64
  };

  StatisticsLayout layout_;
  int depth_, num_heads_;
  std::vector<StatisticInfo> statistics_;
  std::vector<int64_t> count_;                        // [block]
  std::map<std::string, std::vector<Moments>> heads_;  // per-head values, [block]
  std::map<std::string, std::vector<Moments>> means_;  // head-averaged values, [block]
};

}  // namespace vitprobe
