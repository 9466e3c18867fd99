// The attention statistics on hand-made attention matrices whose values follow from the formulas, and the
// dataset accumulator against a direct mean / std.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/errors.h"
#include "stats/attention_statistics.h"

namespace vitprobe {
namespace {

constexpr double kEps = 1e-6;  // the official constant

double value(const BlockStatistics& stats, const std::string& name, int64_t image = 0, int64_t head = 0) {
  const auto& tensor = stats.at(name);
  return tensor.dim() == 2 ? tensor[image][head].item<double>() : tensor[image].item<double>();
}

at::Tensor ones_norms(int64_t batch, int64_t tokens) { return at::ones({batch, tokens}, at::kFloat); }

TEST(stats, AttentionUniformAttentionWithClassToken) {
  const StatisticsLayout layout{true, 0, 16};
  const int64_t t = layout.num_tokens();
  const auto attention = at::full({1, 2, t, t}, 1.0 / t, at::kFloat);
  const auto stats = compute_block_statistics(attention, ones_norms(1, t), ones_norms(1, t), layout);
  const double a = 1.0 / t, to_patches = 16.0 / t;
  EXPECT_NEAR(value(stats, "cls_cls_attention"), a, 1e-7);
  EXPECT_NEAR(value(stats, "pos_self_attention", 0, 1), a, 1e-7);
  EXPECT_NEAR(value(stats, "cls_cls_attention_adj_for_cls"), a / (to_patches + kEps), 1e-7);
  EXPECT_NEAR(value(stats, "pos_self_attention_adj_for_cls"), a / (to_patches + kEps), 1e-7);
  EXPECT_NEAR(value(stats, "cls_pos_attention"), a, 1e-7);
  EXPECT_NEAR(value(stats, "pos_cls_attention"), a, 1e-7);
  const double p = a / (to_patches + kEps);
  EXPECT_NEAR(value(stats, "cls_pos_entropy"), -16 * p * std::log(p + kEps), 1e-6);
  EXPECT_NEAR(value(stats, "pos_pos_entropy"), -16 * p * std::log(p + kEps), 1e-6);
  EXPECT_NEAR(value(stats, "cls_pos_entropy"), std::log(16.0), 1e-4);
  EXPECT_NEAR(value(stats, "cls_magnitude"), 1.0 / (1.0 + kEps), 1e-9);
  EXPECT_EQ(stats.count("reg_self_attention"), 0u);
}

TEST(stats, AttentionIdentityAttentionIsSelfOnly) {
  const StatisticsLayout layout{true, 0, 9};
  const int64_t t = layout.num_tokens();
  const auto attention = at::eye(t, at::kDouble).expand({2, 3, t, t}).contiguous();
  const auto stats = compute_block_statistics(attention, ones_norms(2, t), ones_norms(2, t), layout);
  EXPECT_DOUBLE_EQ(value(stats, "cls_cls_attention", 1, 2), 1.0);
  EXPECT_DOUBLE_EQ(value(stats, "pos_self_attention"), 1.0);
  EXPECT_NEAR(value(stats, "cls_cls_attention_adj_for_cls"), 1.0 / kEps, 1e-3);  // [cls] gives nothing to patches
  EXPECT_NEAR(value(stats, "pos_self_attention_adj_for_cls"), 1.0 / (1.0 + kEps), 1e-9);
  EXPECT_DOUBLE_EQ(value(stats, "cls_pos_attention"), 0.0);
  EXPECT_DOUBLE_EQ(value(stats, "pos_cls_attention"), 0.0);
  EXPECT_NEAR(value(stats, "pos_pos_entropy"), 0.0, 1e-5);
  EXPECT_NEAR(value(stats, "cls_pos_entropy"), 0.0, 1e-12);
}

TEST(stats, AttentionRegistersAreExcludedAndReportedApart) {
  // Every row gives 0.4 to the two registers (0.2 each), 0.1 to [cls] and 0.5 spread over the 4 patches.
  const StatisticsLayout layout{true, 2, 4};
  const int64_t t = layout.num_tokens();
  auto attention = at::zeros({1, 1, t, t}, at::kDouble);
  attention.narrow(3, 0, 1).fill_(0.1);
  attention.narrow(3, 1, 2).fill_(0.2);
  attention.narrow(3, 3, 4).fill_(0.125);
  const auto branch = at::arange(1, t + 1, at::kDouble).unsqueeze(0);
  const auto residual = at::full({1, t}, 2.0, at::kDouble);
  const auto stats = compute_block_statistics(attention, branch, residual, layout);
  EXPECT_NEAR(value(stats, "cls_pos_attention"), 0.125, 1e-12);
  EXPECT_NEAR(value(stats, "cls_cls_attention_adj_for_cls"), 0.1 / (0.5 + kEps), 1e-12);
  EXPECT_NEAR(value(stats, "pos_self_attention_adj_for_cls"), 0.125 / (0.5 + kEps), 1e-12);
  EXPECT_NEAR(value(stats, "pos_cls_attention"), 0.1, 1e-12);
  EXPECT_NEAR(value(stats, "cls_reg_attention"), 0.4, 1e-12);
  EXPECT_NEAR(value(stats, "pos_reg_attention"), 0.4, 1e-12);
  EXPECT_NEAR(value(stats, "reg_self_attention"), 0.2, 1e-12);
  // Norm ratios: token k has branch norm k + 1 and residual 2; patches are tokens 3..6, registers 1..2.
  EXPECT_NEAR(value(stats, "cls_magnitude"), 1.0 / (2 + kEps), 1e-12);
  EXPECT_NEAR(value(stats, "reg_magnitude"), 2.5 / (2 + kEps), 1e-12);
  EXPECT_NEAR(value(stats, "pos_magnitude"), 5.5 / (2 + kEps), 1e-12);
  EXPECT_NEAR(value(stats, "pos_pos_entropy"), std::log(4.0), 1e-4);
}

TEST(stats, AttentionModelsWithoutClassTokenGetPatchStatisticsOnly) {
  const StatisticsLayout layout{false, 0, 4};
  std::vector<std::string> names;
  for (const auto& info : statistics_for(layout)) names.push_back(info.name);
  EXPECT_EQ(names, (std::vector<std::string>{"pos_self_attention", "pos_self_attention_adj_for_cls", "pos_pos_entropy",
                                             "pos_magnitude"}));
  const auto attention = at::softmax(at::randn({2, 3, 4, 4}, at::kDouble), -1);
  const auto stats = compute_block_statistics(attention, ones_norms(2, 4), ones_norms(2, 4), layout);
  EXPECT_EQ(stats.count("cls_cls_attention"), 0u);
  EXPECT_NEAR(value(stats, "pos_self_attention", 1, 2), attention[1][2].diagonal().mean().item<double>(), 1e-12);
}

TEST(stats, AttentionOfficialOrderWithClassToken) {
  std::vector<std::string> names;
  for (const auto& info : statistics_for(StatisticsLayout{true, 0, 4})) names.push_back(info.name);
  EXPECT_EQ(names, (std::vector<std::string>{"cls_cls_attention", "pos_self_attention", "cls_cls_attention_adj_for_cls",
                                             "pos_self_attention_adj_for_cls", "cls_pos_attention", "pos_cls_attention",
                                             "cls_pos_entropy", "pos_pos_entropy", "cls_magnitude", "pos_magnitude"}));
  EXPECT_EQ(statistics_for(StatisticsLayout{true, 4, 4}).size(), 14u);
}

TEST(stats, MagnitudeBeforeAndAfterLayerScale) {
  // [cls], 2 registers, 2 patches; the branch norm before LayerScale is what the official ratio reads.
  const StatisticsLayout layout{true, 2, 2, /*layer_scale=*/true};
  const auto attention = at::full({1, 1, 5, 5}, 0.2, at::kFloat);
  const auto before = at::tensor(std::vector<float>{2.0f, 4.0f, 6.0f, 1.0f, 3.0f}).view({1, 5});
  const auto after = before * 0.1;
  const auto residual = at::full({1, 5}, 4.0f);
  const auto stats = compute_block_statistics(attention, before, residual, layout, after);
  EXPECT_NEAR(value(stats, "cls_magnitude"), 2.0 / (4 + kEps), 1e-12);
  EXPECT_NEAR(value(stats, "cls_magnitude_after_layer_scale"), 0.2 / (4 + kEps), 1e-7);
  EXPECT_NEAR(value(stats, "pos_magnitude"), 2.0 / (4 + kEps), 1e-12);
  EXPECT_NEAR(value(stats, "pos_magnitude_after_layer_scale"), 0.2 / (4 + kEps), 1e-7);
  EXPECT_NEAR(value(stats, "reg_magnitude"), 5.0 / (4 + kEps), 1e-12);
  EXPECT_NEAR(value(stats, "reg_magnitude_after_layer_scale"), 0.5 / (4 + kEps), 1e-7);
  EXPECT_EQ(statistics_for(layout).size(), 17u);
  // A LayerScale layout needs the second set of norms; without LayerScale there are no after-LayerScale names.
  EXPECT_THROW(compute_block_statistics(attention, before, residual, layout), BadInput);
  const StatisticsLayout plain{true, 2, 2};
  EXPECT_EQ(compute_block_statistics(attention, before, residual, plain).count("cls_magnitude_after_layer_scale"), 0u);
}

TEST(stats, AttentionWrongShapesAreBadInput) {
  const StatisticsLayout layout{true, 0, 4};
  EXPECT_THROW(compute_block_statistics(at::zeros({1, 2, 4, 4}), ones_norms(1, 5), ones_norms(1, 5), layout), BadInput);
  EXPECT_THROW(compute_block_statistics(at::zeros({1, 2, 5, 5}), ones_norms(2, 5), ones_norms(1, 5), layout), BadInput);
}

TEST(stats, AttentionAccumulatorMatchesDirectMeanAndPopulationStd) {
  const StatisticsLayout layout{true, 0, 4};
  const int depth = 2, heads = 3;
  StatisticsAccumulator accumulator(layout, depth, heads);
  at::manual_seed(3);
  const auto attention = at::softmax(at::randn({11, depth, heads, 5, 5}, at::kDouble) * 2, -1);
  const auto branch = at::rand({11, depth, 5}, at::kDouble), residual = at::rand({11, depth, 5}, at::kDouble) + 1;
  // Uneven batches: 4 + 1 + 6 images.
  for (auto [start, size] : std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {4, 1}, {5, 6}}) {
    for (int block = 0; block < depth; ++block) {
      accumulator.add(block, compute_block_statistics(attention.narrow(0, start, size).select(1, block),
                                                      branch.narrow(0, start, size).select(1, block),
                                                      residual.narrow(0, start, size).select(1, block), layout));
    }
  }
  EXPECT_EQ(accumulator.num_images(), 11);
  const auto summaries = accumulator.summarize();
  for (int block = 0; block < depth; ++block) {
    const auto all = compute_block_statistics(attention.select(1, block), branch.select(1, block),
                                              residual.select(1, block), layout);
    for (const auto& info : accumulator.statistics()) {
      const auto& summary = summaries.at(info.name);
      const auto values = all.at(info.name);
      const auto head_mean = info.per_head ? values.mean(1) : values;
      EXPECT_NEAR(summary.head_mean[block].mean, head_mean.mean().item<double>(), 1e-12) << info.name;
      EXPECT_NEAR(summary.head_mean[block].std, head_mean.std(/*unbiased=*/false).item<double>(), 1e-12) << info.name;
      if (!info.per_head) {
        EXPECT_TRUE(summary.per_head.empty());
        continue;
      }
      for (int head = 0; head < heads; ++head) {
        EXPECT_NEAR(summary.per_head[block][head].mean, values.select(1, head).mean().item<double>(), 1e-12);
        EXPECT_NEAR(summary.per_head[block][head].std, values.select(1, head).std(false).item<double>(), 1e-12);
      }
    }
  }
}

TEST(stats, AttentionAccumulatorRefusesEmptyOrUnevenRuns) {
  const StatisticsLayout layout{true, 0, 4};
  StatisticsAccumulator accumulator(layout, 2, 1);
  EXPECT_THROW(accumulator.summarize(), BadInput);
  const auto attention = at::softmax(at::randn({2, 1, 5, 5}, at::kDouble), -1);
  accumulator.add(0, compute_block_statistics(attention, ones_norms(2, 5), ones_norms(2, 5), layout));
  EXPECT_THROW(accumulator.summarize(), BadInput);  // block 1 saw no images
  EXPECT_THROW(accumulator.add(2, {}), BadInput);
}

}  // namespace
}  // namespace vitprobe
