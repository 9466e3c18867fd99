#include "stats/attention_statistics.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/errors.h"

namespace vitprobe {
namespace {

// The constant of the official code, added to every denominator and inside the entropy's logarithm.
constexpr double kEpsilon = 1e-6;

const char* kAttention = "attention";
const char* kEntropy = "entropy (nats)";
const char* kNormRatio = "norm ratio";

std::string shape_text(at::IntArrayRef shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + ")";
}

// Merges a batch's (count, mean, m2) into running moments (Chan, Golub & LeVeque's parallel update).
void merge(at::Tensor& mean, at::Tensor& m2, int64_t count, const at::Tensor& values) {
  const int64_t batch = values.size(0);
  const auto batch_mean = values.mean(0);
  const auto batch_m2 = (values - batch_mean).pow(2).sum(0);
  if (count == 0) {
    mean = batch_mean;
    m2 = batch_m2;
    return;
  }
  const double total = static_cast<double>(count + batch);
  const auto delta = batch_mean - mean;
  mean = mean + delta * (static_cast<double>(batch) / total);
  m2 = m2 + batch_m2 + delta.pow(2) * (static_cast<double>(count) * static_cast<double>(batch) / total);
}

MeanStd moments_at(const at::Tensor& mean, const at::Tensor& m2, int64_t index, int64_t count) {
  const double variance = std::max(0.0, m2[index].item<double>() / static_cast<double>(count));
  return {mean[index].item<double>(), std::sqrt(variance)};
}

}  // namespace

std::vector<StatisticInfo> all_statistics() {
  // name, per head, unit, needs [cls], needs registers, needs LayerScale
  return {{"cls_cls_attention", true, kAttention, true, false, false},
          {"pos_self_attention", true, kAttention, false, false, false},
          {"cls_cls_attention_adj_for_cls", true, kAttention, true, false, false},
          {"pos_self_attention_adj_for_cls", true, kAttention, false, false, false},
          {"cls_pos_attention", true, kAttention, true, false, false},
          {"pos_cls_attention", true, kAttention, true, false, false},
          {"cls_pos_entropy", true, kEntropy, true, false, false},
          {"pos_pos_entropy", true, kEntropy, false, false, false},
          {"cls_magnitude", false, kNormRatio, true, false, false},
          {"pos_magnitude", false, kNormRatio, false, false, false},
          {"cls_magnitude_after_layer_scale", false, kNormRatio, true, false, true},
          {"pos_magnitude_after_layer_scale", false, kNormRatio, false, false, true},
          {"cls_reg_attention", true, kAttention, true, true, false},
          {"pos_reg_attention", true, kAttention, false, true, false},
          {"reg_self_attention", true, kAttention, false, true, false},
          {"reg_magnitude", false, kNormRatio, false, true, false},
          {"reg_magnitude_after_layer_scale", false, kNormRatio, false, true, true}};
}

std::vector<StatisticInfo> statistics_for(const StatisticsLayout& layout) {
  std::vector<StatisticInfo> chosen;
  for (const auto& info : all_statistics()) {
    if (info.needs_class_token && !layout.class_token) continue;
    if (info.needs_registers && layout.num_registers == 0) continue;
    if (info.needs_layer_scale && !layout.layer_scale) continue;
    chosen.push_back(info);
  }
  return chosen;
}

BlockStatistics compute_block_statistics(const at::Tensor& attention, const at::Tensor& branch_norms,
                                         const at::Tensor& residual_norms, const StatisticsLayout& layout,
                                         const at::Tensor& branch_norms_after_layer_scale) {
  const int64_t n_tokens = layout.num_tokens();
  if (layout.num_patches <= 0) throw BadInput("attention statistics: the layout has no patch tokens");
  if (attention.dim() != 4 || attention.size(2) != n_tokens || attention.size(3) != n_tokens) {
    throw BadInput("attention statistics: attention has shape " + shape_text(attention.sizes()) +
                   ", expected (B, heads, " + std::to_string(n_tokens) + ", " + std::to_string(n_tokens) + ")");
  }
  const int64_t batch = attention.size(0);
  if (layout.layer_scale && !branch_norms_after_layer_scale.defined()) {
    throw BadInput("attention statistics: a LayerScale model needs the branch norms after LayerScale too");
  }
  std::vector<const at::Tensor*> all_norms = {&branch_norms, &residual_norms};
  if (layout.layer_scale) all_norms.push_back(&branch_norms_after_layer_scale);
  for (const at::Tensor* norms : all_norms) {
    if (norms->dim() != 2 || norms->size(0) != batch || norms->size(1) != n_tokens) {
      throw BadInput("attention statistics: norms have shape " + shape_text(norms->sizes()) + ", expected (" +
                     std::to_string(batch) + ", " + std::to_string(n_tokens) + ")");
    }
  }
  // Reduced where the maps are (on the GPU in CUDA runs): only the (B, heads) results travel to the host.
  const auto a = attention.to(at::kDouble);
  const int64_t first_patch = layout.first_patch(), n_patches = layout.num_patches;
  const int64_t first_register = layout.first_register(), n_registers = layout.num_registers;

  // Attention each row gives to the patches, the rows renormalised over patches, and their entropies.
  const auto to_patches = a.narrow(3, first_patch, n_patches);                    // (B, H, T, P)
  const auto patch_sum = to_patches.sum(-1);                                      // (B, H, T)
  const auto over_patches = to_patches / (patch_sum.unsqueeze(-1) + kEpsilon);
  const auto entropy = -(over_patches * (over_patches + kEpsilon).log()).sum(-1);  // (B, H, T)
  const auto self = a.diagonal(0, 2, 3);                                           // (B, H, T)
  // The official magnitude (models_simmim.py:139-146, main_attention_stats.py:260-262): branch before LayerScale.
  const auto residual = residual_norms.to(a.device(), at::kDouble) + kEpsilon;
  const auto ratio = branch_norms.to(a.device(), at::kDouble) / residual;
  at::Tensor scaled_ratio;
  if (layout.layer_scale) scaled_ratio = branch_norms_after_layer_scale.to(a.device(), at::kDouble) / residual;

  BlockStatistics out;
  const auto patch_self = self.narrow(2, first_patch, n_patches);
  out["pos_self_attention"] = patch_self.mean(-1);
  out["pos_self_attention_adj_for_cls"] = (patch_self / (patch_sum.narrow(2, first_patch, n_patches) + kEpsilon)).mean(-1);
  out["pos_pos_entropy"] = entropy.narrow(2, first_patch, n_patches).mean(-1);
  out["pos_magnitude"] = ratio.narrow(1, first_patch, n_patches).mean(-1);
  if (layout.layer_scale) out["pos_magnitude_after_layer_scale"] = scaled_ratio.narrow(1, first_patch, n_patches).mean(-1);
  if (layout.class_token) {
    const auto cls_row = a.select(2, 0);  // (B, H, T)
    out["cls_cls_attention"] = cls_row.select(2, 0);
    out["cls_cls_attention_adj_for_cls"] = cls_row.select(2, 0) / (patch_sum.select(2, 0) + kEpsilon);
    out["cls_pos_attention"] = cls_row.narrow(2, first_patch, n_patches).mean(-1);
    out["pos_cls_attention"] = a.select(3, 0).narrow(2, first_patch, n_patches).mean(-1);
    out["cls_pos_entropy"] = entropy.select(2, 0);
    out["cls_magnitude"] = ratio.select(1, 0);
    if (layout.layer_scale) out["cls_magnitude_after_layer_scale"] = scaled_ratio.select(1, 0);
  }
  if (n_registers > 0) {
    const auto to_registers = a.narrow(3, first_register, n_registers).sum(-1);  // (B, H, T)
    if (layout.class_token) out["cls_reg_attention"] = to_registers.select(2, 0);
    out["pos_reg_attention"] = to_registers.narrow(2, first_patch, n_patches).mean(-1);
    out["reg_self_attention"] = self.narrow(2, first_register, n_registers).mean(-1);
    out["reg_magnitude"] = ratio.narrow(1, first_register, n_registers).mean(-1);
    if (layout.layer_scale) {
      out["reg_magnitude_after_layer_scale"] = scaled_ratio.narrow(1, first_register, n_registers).mean(-1);
    }
  }
  for (auto& [name, value] : out) value = value.cpu();
  return out;
}

StatisticsAccumulator::StatisticsAccumulator(StatisticsLayout layout, int depth, int num_heads)
    : layout_(layout), depth_(depth), num_heads_(num_heads), statistics_(statistics_for(layout)) {
  if (depth <= 0 || num_heads <= 0) {
    throw BadInput("attention statistics: depth " + std::to_string(depth) + " and heads " + std::to_string(num_heads) +
                   " must be positive");
  }
  count_.assign(static_cast<size_t>(depth), 0);
  for (const auto& info : statistics_) {
    if (info.per_head) heads_[info.name].resize(static_cast<size_t>(depth));
    means_[info.name].resize(static_cast<size_t>(depth));
  }
}

void StatisticsAccumulator::add(int block, const BlockStatistics& values) {
  if (block < 0 || block >= depth_) throw BadInput("attention statistics: no block " + std::to_string(block));
  int64_t batch = -1;
  const auto index = static_cast<size_t>(block);
  for (const auto& info : statistics_) {
    const auto found = values.find(info.name);
    if (found == values.end()) throw BadInput("attention statistics: block values lack " + info.name);
    const auto& value = found->second;
    if (batch < 0) batch = value.size(0);
    if (value.size(0) != batch) throw BadInput("attention statistics: " + info.name + " has a different batch size");
    if (info.per_head) {
      if (value.dim() != 2 || value.size(1) != num_heads_) {
        throw BadInput("attention statistics: " + info.name + " has shape " + shape_text(value.sizes()) +
                       ", expected (B, " + std::to_string(num_heads_) + ")");
      }
      auto& head = heads_[info.name][index];
      merge(head.mean, head.m2, count_[index], value);
      auto& mean = means_[info.name][index];
      merge(mean.mean, mean.m2, count_[index], value.mean(1, /*keepdim=*/true));
    } else {
      auto& mean = means_[info.name][index];
      merge(mean.mean, mean.m2, count_[index], value.reshape({batch, 1}));
    }
  }
  if (batch > 0) count_[index] += batch;
}

void StatisticsAccumulator::all_reduce(Communicator& communicator) {
  if (!communicator.distributed()) return;
  // Every moment of every statistic and block, in one fixed order on every rank.
  struct Entry {
    Moments* moments;
    size_t block;
    int64_t width;  // num_heads for per-head values, 1 for head means and magnitudes
  };
  std::vector<Entry> entries;
  for (const auto& info : statistics_) {
    for (size_t block = 0; block < static_cast<size_t>(depth_); ++block) {
      if (info.per_head) entries.push_back({&heads_[info.name][block], block, num_heads_});
      entries.push_back({&means_[info.name][block], block, 1});
    }
  }
  const auto options = at::TensorOptions().dtype(at::kDouble);
  std::vector<at::Tensor> sums = {at::tensor(std::vector<double>(count_.begin(), count_.end()), options)};
  for (auto& entry : entries) {
    if (!entry.moments->mean.defined()) {  // this rank saw no image
      entry.moments->mean = at::zeros({entry.width}, options);
      entry.moments->m2 = at::zeros({entry.width}, options);
    }
    sums.push_back(entry.moments->mean * static_cast<double>(count_[entry.block]));
  }
  communicator.all_reduce_sum(sums);
  std::vector<at::Tensor> deviations;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto& entry = entries[i];
    const double total = sums[0][static_cast<int64_t>(entry.block)].item<double>();
    const auto global_mean = total > 0 ? sums[i + 1] / total : at::zeros_like(sums[i + 1]);
    deviations.push_back(entry.moments->m2 + (entry.moments->mean - global_mean).pow(2) * static_cast<double>(count_[entry.block]));
    entry.moments->mean = global_mean;
  }
  communicator.all_reduce_sum(deviations);
  for (size_t i = 0; i < entries.size(); ++i) entries[i].moments->m2 = deviations[i];
  for (size_t block = 0; block < count_.size(); ++block) {
    count_[block] = static_cast<int64_t>(std::llround(sums[0][static_cast<int64_t>(block)].item<double>()));
  }
}

std::map<std::string, StatisticSummary> StatisticsAccumulator::summarize() const {
  if (num_images() == 0) throw BadInput("attention statistics: no images were processed");
  for (int64_t count : count_) {
    if (count != num_images()) throw BadInput("attention statistics: blocks saw different numbers of images");
  }
  std::map<std::string, StatisticSummary> summaries;
  for (const auto& info : statistics_) {
    StatisticSummary summary;
    for (int block = 0; block < depth_; ++block) {
      const auto index = static_cast<size_t>(block);
      const auto& mean = means_.at(info.name)[index];
      summary.head_mean.push_back(moments_at(mean.mean, mean.m2, 0, count_[index]));
      if (info.per_head) {
        const auto& head = heads_.at(info.name)[index];
        std::vector<MeanStd> heads;
        for (int h = 0; h < num_heads_; ++h) heads.push_back(moments_at(head.mean, head.m2, h, count_[index]));
        summary.per_head.push_back(heads);
      }
    }
    summaries[info.name] = summary;
  }
  return summaries;
}

}  // namespace vitprobe
