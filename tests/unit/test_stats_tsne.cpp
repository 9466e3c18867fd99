// t-SNE: perplexity calibration, the Barnes-Hut gradient against the exact one, and embeddings that keep
// well-separated clusters apart with either method.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "common/errors.h"
#include "stats/tsne.h"

namespace vitprobe {
namespace {

// n_clusters Gaussian blobs of `per_cluster` points in `dims` dimensions, centres 10 apart.
std::pair<at::Tensor, std::vector<int64_t>> blobs(int n_clusters, int per_cluster, int dims, uint64_t seed) {
  at::manual_seed(seed);
  std::vector<at::Tensor> parts;
  std::vector<int64_t> labels;
  for (int c = 0; c < n_clusters; ++c) {
    auto centre = at::zeros({1, dims}, at::kDouble);
    centre[0][c % dims] = 10.0 * (c + 1);
    parts.push_back(centre + at::randn({per_cluster, dims}, at::kDouble));
    labels.insert(labels.end(), per_cluster, c);
  }
  return {at::cat(parts), labels};
}

// Fraction of points whose nearest other point in the embedding has the same label.
double nearest_neighbour_agreement(const at::Tensor& embedding, const std::vector<int64_t>& labels) {
  auto distances = at::cdist(embedding, embedding);
  distances.fill_diagonal_(std::numeric_limits<double>::infinity());
  const auto nearest = distances.argmin(1);
  int agree = 0;
  for (int64_t i = 0; i < embedding.size(0); ++i) agree += labels[i] == labels[nearest[i].item<int64_t>()];
  return static_cast<double>(agree) / static_cast<double>(embedding.size(0));
}

SparseAffinities dense_to_sparse(const at::Tensor& p) {
  SparseAffinities sparse;
  sparse.row_start.push_back(0);
  for (int64_t i = 0; i < p.size(0); ++i) {
    for (int64_t j = 0; j < p.size(1); ++j) {
      if (i == j) continue;
      sparse.column.push_back(j);
      sparse.value.push_back(p[i][j].item<double>());
    }
    sparse.row_start.push_back(static_cast<int64_t>(sparse.column.size()));
  }
  return sparse;
}

TEST(stats, TsneConditionalProbabilitiesHitThePerplexity) {
  at::manual_seed(1);
  const auto distances = at::rand({20, 30}, at::kDouble) * 50;
  for (double perplexity : {2.0, 5.0, 12.0}) {
    const auto p = conditional_probabilities(distances, perplexity);
    EXPECT_LT((p.sum(1) - 1).abs().max().item<double>(), 1e-12);
    const auto entropy = -(p * p.clamp_min(1e-300).log()).sum(1);
    EXPECT_LT((entropy.exp() - perplexity).abs().max().item<double>(), 1e-3 * perplexity) << perplexity;
  }
}

TEST(stats, TsneExactAffinitiesAreSymmetricJointProbabilities) {
  const auto [points, labels] = blobs(2, 10, 5, 2);
  const auto p = exact_affinities(points, 5.0);
  EXPECT_NEAR(p.sum().item<double>(), 1.0, 1e-9);
  EXPECT_LT((p - p.transpose(0, 1)).abs().max().item<double>(), 1e-15);
  EXPECT_EQ(p.diagonal().abs().max().item<double>(), 0.0);
  const auto sparse = sparse_affinities(points, 5.0);
  double total = 0;
  for (double value : sparse.value) total += value;
  EXPECT_NEAR(total, 1.0, 1e-9);
  EXPECT_EQ(sparse.row_start.size(), 21u);
}

TEST(stats, TsneBarnesHutWithThetaZeroIsTheExactGradient) {
  const auto [points, labels] = blobs(3, 12, 6, 3);
  const auto p = exact_affinities(points, 6.0);
  at::manual_seed(4);
  const auto y = at::randn({36, 2}, at::kDouble) * 3;
  double exact_kl = 0, tree_kl = 0;
  const auto exact = exact_gradient(p, y, 4.0, &exact_kl);
  const auto tree = barnes_hut_gradient(dense_to_sparse(p), y, 0.0, 4.0, &tree_kl);
  EXPECT_LT((exact - tree).abs().max().item<double>(), 1e-10 * (1 + exact.abs().max().item<double>()));
  EXPECT_NEAR(exact_kl, tree_kl, 1e-9);
  // The approximation stays close at the default accuracy.
  const auto approximate = barnes_hut_gradient(dense_to_sparse(p), y, 0.5, 4.0);
  EXPECT_LT((approximate - exact).norm().item<double>(), 0.05 * exact.norm().item<double>());
}

TEST(stats, TsneBarnesHutHandlesDuplicatePoints) {
  auto y = at::zeros({10, 2}, at::kDouble);
  y.narrow(0, 5, 5).fill_(1.0);
  SparseAffinities p;
  p.row_start.assign(11, 0);
  const auto gradient = barnes_hut_gradient(p, y, 0.5, 1.0);
  EXPECT_TRUE(at::isfinite(gradient).all().item<bool>());
  // Pure repulsion pushes the two groups apart along the diagonal.
  EXPECT_GT(gradient[0][0].item<double>(), 0.0);
  EXPECT_LT(gradient[9][0].item<double>(), 0.0);
}

TEST(stats, TsneExactKeepsClustersApart) {
  const auto [points, labels] = blobs(3, 20, 10, 5);
  TsneOptions options;
  options.method = TsneMethod::Exact;
  options.iterations = 400;
  int calls = 0;
  options.on_iteration = [&](int) { ++calls; };
  const auto result = run_tsne(points, options);
  EXPECT_EQ(result.method, "exact");
  EXPECT_EQ(calls, 400);
  EXPECT_EQ(result.embedding.sizes(), (at::IntArrayRef{60, 2}));
  EXPECT_NEAR(result.perplexity, 19.0 + 2.0 / 3.0, 1e-9);  // lowered to (N - 1) / 3
  EXPECT_DOUBLE_EQ(nearest_neighbour_agreement(result.embedding, labels), 1.0);
  EXPECT_LT(result.kl_divergence, 1.0);
  // Deterministic: PCA initialisation, no random numbers.
  const auto again = run_tsne(points, options);
  EXPECT_TRUE(at::equal(result.embedding, again.embedding));
}

TEST(stats, TsneBarnesHutKeepsClustersApartAndReducesWideInputs) {
  const auto [points, labels] = blobs(4, 40, 80, 6);
  TsneOptions options;
  options.method = TsneMethod::Auto;
  options.exact_max_points = 100;  // 160 points: Barnes-Hut
  options.iterations = 500;
  options.perplexity = 15;
  const auto result = run_tsne(points, options);
  EXPECT_EQ(result.method, "barnes-hut");
  EXPECT_EQ(result.input_dims, 50);
  EXPECT_DOUBLE_EQ(result.perplexity, 15.0);
  EXPECT_GE(nearest_neighbour_agreement(result.embedding, labels), 0.99);
  EXPECT_TRUE(at::isfinite(result.embedding).all().item<bool>());
}

TEST(stats, TsneRejectsTooFewPointsAndNonFiniteValues) {
  EXPECT_THROW(run_tsne(at::zeros({2, 4}), TsneOptions{}), BadInput);
  auto features = at::zeros({5, 3});
  features[2][1] = std::nan("");
  EXPECT_THROW(run_tsne(features, TsneOptions{}), BadInput);
  EXPECT_THROW(parse_tsne_method("fast"), BadInput);
  EXPECT_EQ(parse_tsne_method("barnes-hut"), TsneMethod::BarnesHut);
}

}  // namespace
}  // namespace vitprobe
