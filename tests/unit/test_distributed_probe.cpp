// Data-parallel probing with ranks as threads (tests/unit/thread_communicator.h): SyncBatchNorm, bucketed
// gradient averaging and summed evaluation make N ranks equal one process given the whole global batch.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <mutex>

#include "data/loader.h"
#include "distributed/communicator.h"
#include "probe/trainer.h"
#include "test_probe_fixtures.h"
#include "thread_communicator.h"

namespace vitprobe {
namespace {

using dist_test::run_ranks;

using ShardSource = probe_test::MemorySource;

using probe_test::tiny_layout;

std::pair<FeatureMap, at::Tensor> data(int64_t n, int64_t classes, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  const auto labels = at::arange(n, at::kLong).remainder(classes);
  const auto centres = at::randn({classes, 8}, generator) * 2;
  auto tokens = at::randn({n, 5, 8}, generator) + 1.5;  // a mean offset, so BatchNorm's centering matters
  tokens.select(1, 0).add_(centres.index_select(0, labels));
  tokens.select(1, 2).add_(centres.index_select(0, labels));
  return {compute_features(tokens, {}, tiny_layout(), {"tokens", "cls", "mean"}), labels};
}

struct Outcome {
  std::vector<std::vector<NamedTensor>> states;  // per run
  std::vector<double> top1, loss;
};

// Trains on `world_size` ranks with per-rank batch `global_batch / world_size`; returns rank 0's result and
// checks every rank ended with the same weights.
Outcome train(int world_size, int64_t global_batch, const std::string& heads, const std::string& optimizer) {
  const auto [features, labels] = data(150, 3, 7);  // 150 items: the last partial global batch is dropped
  Outcome outcome;
  std::mutex mutex;
  std::vector<std::vector<NamedTensor>> rank_states(static_cast<size_t>(world_size));
  run_ranks(world_size, [&](Communicator& communicator) {
    TrainerOptions options;
    options.epochs = 3;
    options.warmup_epochs = 1;
    options.batch_size = global_batch / world_size;
    options.base_lrs = {0.5, 2.0};
    options.optimizer.kind = optimizer;
    ProbeTrainer trainer(parse_head_list(heads), tiny_layout(), 3, options, at::kCPU, &communicator);
    LoaderOptions train_options;
    train_options.batch_size = options.batch_size;
    train_options.shuffle = true;
    train_options.drop_last = true;
    train_options.seed = 3;
    train_options.rank = communicator.rank();
    train_options.world_size = communicator.world_size();
    LoaderOptions val_options = train_options;
    val_options.shuffle = false;
    val_options.drop_last = false;
    ShardSource train_source(features, labels, train_options), val_source(features, labels, val_options);
    for (int epoch = 0; epoch < options.epochs; ++epoch) {
      trainer.train_epoch(train_source, epoch);
      trainer.evaluate(val_source, epoch);
    }
    std::lock_guard<std::mutex> lock(mutex);
    for (const auto& run : trainer.runs()) {
      for (const auto& [name, tensor] : run.head->state()) {
        rank_states[static_cast<size_t>(communicator.rank())].emplace_back(run.name() + "/" + name, tensor.detach().clone());
      }
    }
    if (communicator.rank() == 0) {
      for (const auto& run : trainer.runs()) {
        outcome.top1.push_back(run.val.back().top1);
        outcome.loss.push_back(run.train_loss.back());
      }
      outcome.states.push_back(rank_states[0]);
    }
  });
  for (int rank = 1; rank < world_size; ++rank) {
    for (size_t i = 0; i < rank_states[0].size(); ++i) {
      EXPECT_TRUE(at::equal(rank_states[0][i].second, rank_states[static_cast<size_t>(rank)][i].second))
          << "rank " << rank << " diverged on " << rank_states[0][i].first;
    }
  }
  return outcome;
}

// The bias of an attention scorer's last layer shifts every patch's score alike, which the softmax cancels:
// its true gradient is 0, and AdamW turns the rounding noise of that 0 into full-size steps (in any run, on
// any number of ranks). It does not change a single output, so the AdamW comparison leaves it out.
bool shift_invariant(const std::string& name) { return name.find("pool.scorer.") != std::string::npos && name.find(".bias") != std::string::npos; }

double max_difference(const Outcome& a, const Outcome& b, bool skip_shift_invariant = false) {
  double worst = 0;
  for (size_t i = 0; i < a.states[0].size(); ++i) {
    if (skip_shift_invariant && shift_invariant(a.states[0][i].first)) continue;
    worst = std::max(worst, (a.states[0][i].second - b.states[0][i].second).abs().max().item<double>());
  }
  return worst;
}

class DistributedTrainer : public ::testing::TestWithParam<std::tuple<int, std::string>> {};

TEST_P(DistributedTrainer, RanksEqualOneProcessWithTheGlobalBatch) {
  const auto [world_size, optimizer] = GetParam();
  const std::string heads = "cls,mean,abmilp,ep:2";
  const auto single = train(1, 24, heads, optimizer);
  const auto ranks = train(world_size, 24, heads, optimizer);
  ASSERT_EQ(single.states[0].size(), ranks.states[0].size());
  EXPECT_LT(max_difference(single, ranks, optimizer == "adamw"), 1e-5);
  for (size_t i = 0; i < single.top1.size(); ++i) {
    EXPECT_DOUBLE_EQ(single.top1[i], ranks.top1[i]);
    EXPECT_NEAR(single.loss[i], ranks.loss[i], 1e-5);
  }
  // The comparison can fail: half the global batch on one process trains other weights.
  const auto other = train(1, 12, heads, optimizer);
  EXPECT_GT(max_difference(single, other), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, DistributedTrainer,
                         ::testing::Values(std::make_tuple(2, std::string("lars")), std::make_tuple(3, std::string("sgd")),
                                           std::make_tuple(2, std::string("adamw"))));

TEST(DistributedTrainer, AimTokenBatchNormStatisticsAreRankZerosOnEveryRank) {
  // aim's own BatchNorm over the tokens sees each rank's shard (as in the EP repository: no SyncBatchNorm), so
  // its running statistics would differ between ranks; evaluate() gives every rank rank 0's, so that all ranks
  // score, save and resume one head. train() fails when any rank's state differs from rank 0's.
  train(2, 24, "aim:heads=2", "sgd");
}

TEST(DistributedTrainer, OneRankSynchronisedForwardIsBatchNorm) {
  const auto [features, labels] = data(12, 3, 13);
  const auto spec = parse_head_list("ep:2").front();
  ProbeHead a(spec, tiny_layout(), 3, 5), b(spec, tiny_layout(), 3, 5);
  const auto expected = a.forward(features, true);
  const auto got = forward_synchronised({&b}, features, single_process()).front();
  EXPECT_TRUE(at::allclose(got, expected, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(a.buffers()[1].second, b.buffers()[1].second, 1e-5, 1e-6));  // running variance
}

TEST(DistributedTrainer, SyncBatchNormGradientsMatchTheGlobalBatch) {
  // Gradients of a pooling head's parameters: (sum over ranks) / world == one process on the whole batch.
  const auto [features, labels] = data(12, 3, 11);
  const auto spec = parse_head_list("abmilp").front();
  ProbeHead reference(spec, tiny_layout(), 3, 5);
  at::cross_entropy_loss(reference.forward(features, true), labels).backward();
  std::vector<std::vector<at::Tensor>> gradients(3);
  std::vector<at::Tensor> running_means(3);
  run_ranks(3, [&](Communicator& communicator) {
    ProbeHead head(spec, tiny_layout(), 3, 5);
    const auto rows = at::arange(communicator.rank(), 12, 3, at::kLong);
    FeatureMap shard;
    for (const auto& [name, tensor] : features) shard[name] = tensor.index_select(0, rows);
    const auto logits = forward_synchronised({&head}, shard, communicator);
    at::cross_entropy_loss(logits.front(), labels.index_select(0, rows)).backward();
    for (const auto& [name, parameter] : head.parameters()) gradients[communicator.rank()].push_back(parameter.grad().clone());
    running_means[communicator.rank()] = head.buffers().front().second.clone();
  });
  const auto parameters = reference.parameters();
  for (size_t i = 0; i < parameters.size(); ++i) {
    const auto averaged = (gradients[0][i] + gradients[1][i] + gradients[2][i]) / 3;
    EXPECT_TRUE(at::allclose(averaged, parameters[i].second.grad(), 1e-5, 1e-6)) << parameters[i].first;
  }
  EXPECT_TRUE(at::allclose(running_means[1], reference.buffers().front().second, 1e-5, 1e-6));
}

TEST(DistributedLoader, FullGlobalBatchesPartitionLikeOneProcess) {
  for (int64_t n : {0, 7, 48, 50, 97}) {
    for (int world : {1, 2, 3, 5}) {
      LoaderOptions options;
      options.batch_size = 4;
      options.shuffle = true;
      options.drop_last = true;
      options.world_size = world;
      LoaderOptions single = options;
      single.world_size = 1;
      single.batch_size = 4 * world;
      auto whole = epoch_order(n, single, 2);
      trim_to_full_batches(whole, n, single);
      const int64_t batches = static_cast<int64_t>(whole.size()) / single.batch_size;
      for (int rank = 0; rank < world; ++rank) {  // every rank gets exactly the full global batches
        options.rank = rank;
        auto order = epoch_order(n, options, 2);
        trim_to_full_batches(order, n, options);
        EXPECT_EQ(static_cast<int64_t>(order.size()), batches * options.batch_size) << "n " << n << " world " << world;
      }
      for (int64_t batch = 0; batch < batches; ++batch) {
        std::vector<int64_t> expected(whole.begin() + batch * single.batch_size, whole.begin() + (batch + 1) * single.batch_size);
        std::vector<int64_t> got;
        for (int rank = 0; rank < world; ++rank) {
          options.rank = rank;
          auto order = epoch_order(n, options, 2);
          trim_to_full_batches(order, n, options);
          ASSERT_EQ(static_cast<int64_t>(order.size()), batches * options.batch_size) << "n " << n << " world " << world;
          got.insert(got.end(), order.begin() + batch * 4, order.begin() + (batch + 1) * 4);
        }
        std::sort(expected.begin(), expected.end());
        std::sort(got.begin(), got.end());
        EXPECT_EQ(expected, got) << "n " << n << " world " << world << " batch " << batch;
      }
    }
  }
}

TEST(DistributedGather, RowsLandAtTheirPositions) {
  std::vector<at::Tensor> gathered(3);
  const auto whole = at::arange(20, at::kFloat).reshape({10, 2});
  run_ranks(3, [&](Communicator& communicator) {
    const auto positions = at::arange(communicator.rank(), 10, 3, at::kLong);
    gathered[communicator.rank()] = all_gather_rows(communicator, whole.index_select(0, positions), positions, 10);
  });
  for (const auto& tensor : gathered) EXPECT_TRUE(at::equal(tensor, whole));
}

}  // namespace
}  // namespace vitprobe
