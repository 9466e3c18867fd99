// Attention statistics merged over ranks (threads, tests/unit/thread_communicator.h) equal one accumulator
// that saw every image.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "stats/attention_statistics.h"
#include "thread_communicator.h"

namespace vitprobe {
namespace {

BlockStatistics random_values(const std::vector<StatisticInfo>& statistics, int64_t batch, int heads, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  BlockStatistics values;
  for (const auto& info : statistics) {
    values[info.name] = info.per_head ? at::rand({batch, heads}, generator, at::kDouble) * 3 + 1
                                      : at::rand({batch}, generator, at::kDouble);
  }
  return values;
}

TEST(DistributedStatistics, MergedShardsEqualOnePass) {
  const StatisticsLayout layout{true, 2, 16};
  const int depth = 3, heads = 4;
  const auto statistics = statistics_for(layout);
  // Batches of uneven sizes: rank r gets batches r, r + 3, ... (rank 2 gets one batch fewer).
  std::vector<std::pair<int, BlockStatistics>> batches;
  for (int i = 0; i < 8; ++i) {
    for (int block = 0; block < depth; ++block) {
      batches.emplace_back(block, random_values(statistics, 3 + i, heads, 100 * i + block));
    }
  }
  StatisticsAccumulator single(layout, depth, heads);
  for (const auto& [block, values] : batches) single.add(block, values);
  const auto expected = single.summarize();
  std::vector<std::map<std::string, StatisticSummary>> merged(3);
  std::vector<int64_t> counts(3);
  dist_test::run_ranks(3, [&](Communicator& communicator) {
    StatisticsAccumulator accumulator(layout, depth, heads);
    for (size_t i = 0; i < batches.size(); ++i) {
      if (static_cast<int>((i / depth) % 3) == communicator.rank()) accumulator.add(batches[i].first, batches[i].second);
    }
    accumulator.all_reduce(communicator);
    merged[communicator.rank()] = accumulator.summarize();
    counts[communicator.rank()] = accumulator.num_images();
  });
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(counts[rank], single.num_images());
    for (const auto& [name, summary] : expected) {
      const auto& got = merged[rank].at(name);
      for (int block = 0; block < depth; ++block) {
        EXPECT_NEAR(got.head_mean[block].mean, summary.head_mean[block].mean, 1e-12) << name;
        EXPECT_NEAR(got.head_mean[block].std, summary.head_mean[block].std, 1e-12) << name;
        const size_t n_heads = summary.per_head.empty() ? 0 : summary.per_head[block].size();
        for (size_t head = 0; head < n_heads; ++head) {
          EXPECT_NEAR(got.per_head[block][head].mean, summary.per_head[block][head].mean, 1e-12) << name;
          EXPECT_NEAR(got.per_head[block][head].std, summary.per_head[block][head].std, 1e-12) << name;
        }
      }
    }
  }
}

TEST(DistributedStatistics, ARankWithoutImagesStillMerges) {
  const StatisticsLayout layout{true, 0, 9};
  const auto statistics = statistics_for(layout);
  StatisticsAccumulator single(layout, 1, 2);
  const auto values = random_values(statistics, 5, 2, 3);
  single.add(0, values);
  std::vector<double> means(2);
  dist_test::run_ranks(2, [&](Communicator& communicator) {
    StatisticsAccumulator accumulator(layout, 1, 2);
    if (communicator.rank() == 0) accumulator.add(0, values);
    accumulator.all_reduce(communicator);
    means[communicator.rank()] = accumulator.summarize().at("cls_cls_attention").head_mean[0].mean;
  });
  const double expected = single.summarize().at("cls_cls_attention").head_mean[0].mean;
  EXPECT_NEAR(means[0], expected, 1e-12);
  EXPECT_NEAR(means[1], expected, 1e-12);
}

}  // namespace
}  // namespace vitprobe
