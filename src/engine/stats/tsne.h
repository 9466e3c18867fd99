#pragma once
// t-SNE (van der Maaten & Hinton 2008) to 2-D: exact gradients for small sets, Barnes-Hut (van der Maaten
// 2014) above a size threshold. The optimisation follows scikit-learn's TSNE (1.2): squared Euclidean
// input distances, per-point perplexity calibration by bisection, PCA initialisation scaled to std 1e-4,
// early exaggeration 12 for 250 iterations at momentum 0.5 then momentum 0.8, delta-bar-delta gains,
// learning rate max(N / exaggeration / 4, 50). Inputs wider than `pca_dims` are first reduced by PCA.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vitprobe {

/// How the gradient is computed.
enum class TsneMethod { Auto, Exact, BarnesHut };

/// Parses "auto", "exact" or "barnes-hut"; throws BadInput otherwise.
TsneMethod parse_tsne_method(const std::string& name);

/// Options of run_tsne.
struct TsneOptions {
  double perplexity = 30.0;           // lowered to (N - 1) / 3 for small sets
  int iterations = 1000;
  int exaggeration_iterations = 250;
  double early_exaggeration = 12.0;
  double learning_rate = 0.0;         // 0: max(N / early_exaggeration / 4, 50)
  double theta = 0.5;                 // Barnes-Hut accuracy (0 = exact repulsion through the tree)
  TsneMethod method = TsneMethod::Auto;
  int64_t exact_max_points = 2000;    // Auto: exact up to this many points
  int pca_dims = 50;                  // reduce wider inputs to this many principal components (0: never)
  std::function<void(int)> on_iteration;  // called after every iteration with its number (1-based)
};

/// What run_tsne returns.
struct TsneResult {
  at::Tensor embedding;       // (N, 2) float64
  std::string method;         // "exact" or "barnes-hut"
  double perplexity = 0;      // the perplexity used
  double kl_divergence = 0;   // KL(P || Q) at the end (Q from the Barnes-Hut normaliser for that method)
  double learning_rate = 0;
  int input_dims = 0;         // after PCA
};

/// Embeds the rows of `features` (N, D) in 2-D; throws BadInput for fewer than 3 points or non-finite values.
TsneResult run_tsne(const at::Tensor& features, const TsneOptions& options);

// The building blocks, exposed for tests.

/// Conditional probabilities p_{j|i} over the entries of `squared_distances` (one row per point, the point
/// itself excluded by the caller) with the Gaussian precision found by bisection so that each row's
/// perplexity is `perplexity`; returns a tensor of the same shape, rows summing to 1.
at::Tensor conditional_probabilities(const at::Tensor& squared_distances, double perplexity);

/// A symmetric sparse matrix of joint probabilities in compressed rows.
struct SparseAffinities {
  std::vector<int64_t> row_start;  // N + 1
  std::vector<int64_t> column;
  std::vector<double> value;
};

/// The exact joint probabilities (N, N) of `points` (N, D): symmetrised conditional probabilities / 2N.
at::Tensor exact_affinities(const at::Tensor& points, double perplexity);

/// The Barnes-Hut joint probabilities over the floor(3 * perplexity) nearest neighbours of each point.
SparseAffinities sparse_affinities(const at::Tensor& points, double perplexity);

/// The KL gradient (N, 2) of embedding `y` (N, 2) for dense joint probabilities `p`, each multiplied by
/// `exaggeration`; `kl` receives KL(P || Q) when given.
at::Tensor exact_gradient(const at::Tensor& p, const at::Tensor& y, double exaggeration, double* kl = nullptr);

/// The same with sparse P and the repulsion approximated on a quadtree with accuracy `theta`.
at::Tensor barnes_hut_gradient(const SparseAffinities& p, const at::Tensor& y, double theta, double exaggeration,
                               double* kl = nullptr);

}  // namespace vitprobe
