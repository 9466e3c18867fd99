#include "stats/tsne.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/errors.h"

namespace vitprobe {
namespace {

// scikit-learn's constants (sklearn/manifold/_t_sne.py, _utils.pyx).
constexpr double kMachineEpsilon = 2.220446049250313e-16;
constexpr double kEntropyTolerance = 1e-5;
constexpr int kBisectionSteps = 100;
constexpr double kMomentumEarly = 0.5, kMomentumLate = 0.8, kMinGain = 0.01;
constexpr int kMaxTreeDepth = 64;

// Squared Euclidean distances between the rows of a and b, clamped at 0 (float64).
at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& b) {
  const auto a2 = (a * a).sum(1, true), b2 = (b * b).sum(1, true);
  return (a2 + b2.transpose(0, 1) - 2.0 * at::matmul(a, b.transpose(0, 1))).clamp_min(0.0);
}

// A point quadtree over the embedding with each cell's centre of mass; points at identical positions share
// one leaf (so a leaf at distance 0 from a point holds that point).
class QuadTree {
 public:
  explicit QuadTree(const at::Tensor& y) {
    const auto* data = y.data_ptr<double>();
    const int64_t n = y.size(0);
    double min_x = std::numeric_limits<double>::infinity(), min_y = min_x, max_x = -min_x, max_y = -min_x;
    for (int64_t i = 0; i < n; ++i) {
      min_x = std::min(min_x, data[2 * i]), max_x = std::max(max_x, data[2 * i]);
      min_y = std::min(min_y, data[2 * i + 1]), max_y = std::max(max_y, data[2 * i + 1]);
    }
    Node root;
    root.center_x = 0.5 * (min_x + max_x);
    root.center_y = 0.5 * (min_y + max_y);
    root.half = 0.5 * std::max(max_x - min_x, max_y - min_y) * (1 + 1e-9) + 1e-12;
    nodes_.reserve(static_cast<size_t>(4 * n + 1));
    nodes_.push_back(root);
    for (int64_t i = 0; i < n; ++i) insert(data[2 * i], data[2 * i + 1]);
  }

  // Repulsive force sum_j w_ij^2 (y_i - y_j) and sum_j w_ij (w = 1 / (1 + |y_i - y_j|^2), j != i), with
  // cells of width / distance < theta taken as one point at their centre of mass.
  void repulsion(double x, double y, double theta, double& force_x, double& force_y, double& z) const {
    force_x = force_y = z = 0;
    int64_t stack[4 * kMaxTreeDepth + 8];
    int top = 0;
    stack[top++] = 0;
    while (top > 0) {
      const Node& node = nodes_[static_cast<size_t>(stack[--top])];
      if (node.count == 0) continue;
      const double dx = x - node.mass_x, dy = y - node.mass_y, d2 = dx * dx + dy * dy;
      if (!node.leaf && !(d2 > 0 && 2 * node.half < theta * std::sqrt(d2))) {
        for (int64_t child : node.children) stack[top++] = child;
        continue;
      }
      const double count = static_cast<double>(node.leaf && d2 == 0 ? node.count - 1 : node.count);
      if (count <= 0) continue;
      const double w = 1.0 / (1.0 + d2);
      z += count * w;
      force_x += count * w * w * dx;
      force_y += count * w * w * dy;
    }
  }

 private:
  struct Node {
    double center_x = 0, center_y = 0, half = 0;
    double mass_x = 0, mass_y = 0;  // centre of mass
    int64_t count = 0;
    bool leaf = true;
    int64_t children[4] = {-1, -1, -1, -1};
  };

  int quadrant(const Node& node, double x, double y) const { return (x >= node.center_x ? 1 : 0) + (y >= node.center_y ? 2 : 0); }

  void insert(double x, double y) {
    size_t index = 0;
    for (int depth = 0;; ++depth) {
      Node& node = nodes_[index];
      // A leaf's points all sit at its centre of mass (exactly: the mean of equal values is that value).
      const double leaf_x = node.mass_x, leaf_y = node.mass_y;
      const int64_t leaf_count = node.count;
      const double total = static_cast<double>(node.count + 1);
      node.mass_x += (x - node.mass_x) / total;
      node.mass_y += (y - node.mass_y) / total;
      node.count += 1;
      if (node.leaf) {
        // An empty leaf, a point at the leaf's position, or too deep to split: the point stays here.
        if (leaf_count == 0 || (leaf_x == x && leaf_y == y) || depth >= kMaxTreeDepth) return;
        split(index, leaf_x, leaf_y, leaf_count);
      }
      const Node& parent = nodes_[index];
      index = static_cast<size_t>(parent.children[quadrant(parent, x, y)]);
    }
  }

  // Turns a leaf into four children and moves the `count` points it held (all at (x, y)) into one of them.
  void split(size_t index, double x, double y, int64_t count) {
    for (int q = 0; q < 4; ++q) {
      const Node& parent = nodes_[index];
      Node child;
      child.half = 0.5 * parent.half;
      child.center_x = parent.center_x + ((q & 1) ? child.half : -child.half);
      child.center_y = parent.center_y + ((q & 2) ? child.half : -child.half);
      nodes_[index].children[q] = static_cast<int64_t>(nodes_.size());
      nodes_.push_back(child);  // may reallocate: no reference into nodes_ is held across this
    }
    Node& node = nodes_[index];
    node.leaf = false;
    Node& holder = nodes_[static_cast<size_t>(node.children[quadrant(node, x, y)])];
    holder.count = count;
    holder.mass_x = x;
    holder.mass_y = y;
  }

  std::vector<Node> nodes_;
};

// PCA of centred rows: the projection on the top `k` principal axes, signs fixed so the largest-magnitude
// loading of each axis is positive (deterministic output).
at::Tensor principal_components(const at::Tensor& centred, int64_t k) {
  const auto covariance = at::matmul(centred.transpose(0, 1), centred);
  const auto [eigenvalues, eigenvectors] = at::linalg_eigh(covariance);
  auto axes = eigenvectors.flip({1}).narrow(1, 0, k).contiguous();  // (D, k), descending variance
  const auto largest = axes.abs().argmax(0);
  const auto signs = axes.gather(0, largest.unsqueeze(0)).sign();
  axes = axes * at::where(signs == 0, at::ones_like(signs), signs);
  return at::matmul(centred, axes);
}

void check_gradient_inputs(const at::Tensor& y) {
  if (y.dim() != 2 || y.size(1) != 2 || y.scalar_type() != at::kDouble) {
    throw BadInput("t-SNE: the embedding must be (N, 2) float64");
  }
}

}  // namespace

TsneMethod parse_tsne_method(const std::string& name) {
  if (name == "auto") return TsneMethod::Auto;
  if (name == "exact") return TsneMethod::Exact;
  if (name == "barnes-hut") return TsneMethod::BarnesHut;
  throw BadInput("t-SNE method '" + name + "': expected auto, exact or barnes-hut");
}

at::Tensor conditional_probabilities(const at::Tensor& squared_distances, double perplexity) {
  const auto distances = squared_distances.to(at::kDouble).contiguous();
  auto probabilities = at::zeros_like(distances);
  const int64_t n_rows = distances.size(0), n_columns = distances.size(1);
  const double* d = distances.data_ptr<double>();
  double* p = probabilities.data_ptr<double>();
  const double desired_entropy = std::log(perplexity);
  at::parallel_for(0, n_rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const double* distance = d + row * n_columns;
      double* out = p + row * n_columns;
      // Shifting by the smallest distance leaves p and the entropy unchanged and keeps exp() from underflowing.
      double shift = std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n_columns; ++j) shift = std::min(shift, distance[j]);
      double beta = 1.0, beta_min = -std::numeric_limits<double>::infinity(), beta_max = std::numeric_limits<double>::infinity();
      for (int step = 0; step < kBisectionSteps; ++step) {
        double sum = 0, weighted = 0;
        for (int64_t j = 0; j < n_columns; ++j) {
          if (!std::isfinite(distance[j])) {
            out[j] = 0;
            continue;
          }
          out[j] = std::exp(-(distance[j] - shift) * beta);
          sum += out[j];
          weighted += (distance[j] - shift) * out[j];
        }
        sum = std::max(sum, kMachineEpsilon);
        for (int64_t j = 0; j < n_columns; ++j) out[j] /= sum;
        const double entropy = std::log(sum) + beta * weighted / sum;
        const double difference = entropy - desired_entropy;
        if (std::abs(difference) <= kEntropyTolerance) break;
        if (difference > 0) {
          beta_min = beta;
          beta = std::isinf(beta_max) ? beta * 2.0 : 0.5 * (beta + beta_max);
        } else {
          beta_max = beta;
          beta = std::isinf(beta_min) ? beta / 2.0 : 0.5 * (beta + beta_min);
        }
      }
    }
  });
  return probabilities;
}

at::Tensor exact_affinities(const at::Tensor& points, double perplexity) {
  const auto x = points.to(at::kDouble);
  auto distances = squared_distances(x, x);
  distances.fill_diagonal_(std::numeric_limits<double>::infinity());  // a point is not its own neighbour
  const auto conditional = conditional_probabilities(distances, perplexity);
  auto joint = conditional + conditional.transpose(0, 1);
  joint = (joint / std::max(joint.sum().item<double>(), kMachineEpsilon)).clamp_min(kMachineEpsilon);
  joint.fill_diagonal_(0.0);
  return joint;
}

SparseAffinities sparse_affinities(const at::Tensor& points, double perplexity) {
  const auto x = points.to(at::kDouble).contiguous();
  const int64_t n = x.size(0);
  const int64_t k = std::min<int64_t>(n - 1, static_cast<int64_t>(3.0 * perplexity + 1.0));
  std::vector<at::Tensor> neighbour_distances, neighbour_indices;
  for (int64_t start = 0; start < n; start += 1024) {
    const int64_t rows = std::min<int64_t>(1024, n - start);
    auto distances = squared_distances(x.narrow(0, start, rows), x);
    distances.narrow(1, start, rows).fill_diagonal_(std::numeric_limits<double>::infinity());
    auto [values, indices] = at::topk(distances, k, 1, /*largest=*/false, /*sorted=*/true);
    neighbour_distances.push_back(values);
    neighbour_indices.push_back(indices);
  }
  const auto conditional = conditional_probabilities(at::cat(neighbour_distances), perplexity).contiguous();
  const auto indices = at::cat(neighbour_indices).contiguous();
  const double* p = conditional.data_ptr<double>();
  const int64_t* j = indices.data_ptr<int64_t>();

  // P + P^T over the union of both neighbourhoods, normalised to sum 1.
  std::vector<std::vector<std::pair<int64_t, double>>> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t m = 0; m < k; ++m) {
      rows[static_cast<size_t>(i)].emplace_back(j[i * k + m], p[i * k + m]);
      rows[static_cast<size_t>(j[i * k + m])].emplace_back(i, p[i * k + m]);
    }
  }
  SparseAffinities out;
  out.row_start.push_back(0);
  double total = 0;
  for (auto& row : rows) {
    std::sort(row.begin(), row.end());
    for (size_t m = 0; m < row.size(); ++m) {
      if (m > 0 && row[m].first == row[m - 1].first) {
        out.value.back() += row[m].second;
      } else {
        out.column.push_back(row[m].first);
        out.value.push_back(row[m].second);
      }
      total += row[m].second;
    }
    out.row_start.push_back(static_cast<int64_t>(out.column.size()));
  }
  for (double& value : out.value) value /= std::max(total, kMachineEpsilon);
  return out;
}

at::Tensor exact_gradient(const at::Tensor& p, const at::Tensor& y, double exaggeration, double* kl) {
  check_gradient_inputs(y);
  auto w = 1.0 / (1.0 + squared_distances(y, y));
  w.fill_diagonal_(0.0);
  const double z = std::max(w.sum().item<double>(), kMachineEpsilon);
  const auto q = (w / z).clamp_min(kMachineEpsilon);
  const auto pq = (p * exaggeration - q) * w;
  pq.fill_diagonal_(0.0);
  if (kl) {
    const auto mask = at::ones_like(p).fill_diagonal_(0.0);
    *kl = (p * (p.clamp_min(kMachineEpsilon) / q).log() * mask).sum().item<double>();
  }
  return 4.0 * (pq.sum(1, true) * y - at::matmul(pq, y));
}

at::Tensor barnes_hut_gradient(const SparseAffinities& p, const at::Tensor& y, double theta, double exaggeration,
                               double* kl) {
  check_gradient_inputs(y);
  const auto points = y.contiguous();
  const int64_t n = points.size(0);
  const double* data = points.data_ptr<double>();
  const QuadTree tree(points);
  auto gradient = at::zeros({n, 2}, at::kDouble);
  double* grad = gradient.data_ptr<double>();
  std::vector<double> repulsion(static_cast<size_t>(2 * n)), z_parts(static_cast<size_t>(n));
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      tree.repulsion(data[2 * i], data[2 * i + 1], theta, repulsion[2 * i], repulsion[2 * i + 1], z_parts[i]);
    }
  });
  double z = 0;
  for (double part : z_parts) z += part;
  z = std::max(z, kMachineEpsilon);
  double divergence = 0;
  for (int64_t i = 0; i < n; ++i) {
    double attract_x = 0, attract_y = 0;
    for (int64_t m = p.row_start[i]; m < p.row_start[i + 1]; ++m) {
      const int64_t j = p.column[m];
      const double dx = data[2 * i] - data[2 * j], dy = data[2 * i + 1] - data[2 * j + 1];
      const double w = 1.0 / (1.0 + dx * dx + dy * dy);
      attract_x += p.value[m] * w * dx;
      attract_y += p.value[m] * w * dy;
      if (kl && p.value[m] > 0) divergence += p.value[m] * std::log(std::max(p.value[m], kMachineEpsilon) / std::max(w / z, kMachineEpsilon));
    }
    grad[2 * i] = 4.0 * (exaggeration * attract_x - repulsion[2 * i] / z);
    grad[2 * i + 1] = 4.0 * (exaggeration * attract_y - repulsion[2 * i + 1] / z);
  }
  if (kl) *kl = divergence;
  return gradient;
}

TsneResult run_tsne(const at::Tensor& features, const TsneOptions& options) {
  if (features.dim() != 2 || features.size(0) < 3) {
    throw BadInput("t-SNE: needs at least 3 points as an (N, D) matrix, got " + std::to_string(features.dim() == 2 ? features.size(0) : 0) + " points");
  }
  auto x = features.to(at::kCPU, at::kDouble);
  if (!at::isfinite(x).all().item<bool>()) throw BadInput("t-SNE: the features contain NaN or infinite values");
  if (!(options.perplexity > 0)) throw BadInput("t-SNE: perplexity must be positive");
  if (options.iterations < 1) throw BadInput("t-SNE: iterations must be >= 1");
  const int64_t n = x.size(0);
  TsneResult result;
  const bool exact = options.method == TsneMethod::Exact ||
                     (options.method == TsneMethod::Auto && n <= options.exact_max_points);
  result.method = exact ? "exact" : "barnes-hut";
  result.perplexity = std::min(options.perplexity, std::max(1.0, (n - 1) / 3.0));
  result.learning_rate = options.learning_rate > 0 ? options.learning_rate
                                                   : std::max(n / options.early_exaggeration / 4.0, 50.0);

  x = x - x.mean(0, true);
  const int64_t n_dims = x.size(1);
  const int64_t kept = options.pca_dims > 0 && n_dims > options.pca_dims ? options.pca_dims : n_dims;
  const auto components = principal_components(x, std::max<int64_t>(kept, std::min<int64_t>(2, n_dims)));
  if (kept < n_dims) x = components.narrow(1, 0, kept).contiguous();
  result.input_dims = static_cast<int>(x.size(1));

  // scikit-learn's PCA initialisation: the first two components, scaled so the first has std 1e-4.
  at::Tensor y = n_dims >= 2 ? components.narrow(1, 0, 2).clone() : at::cat({components.narrow(1, 0, 1), at::zeros({n, 1}, at::kDouble)}, 1);
  const double first_std = y.select(1, 0).std(/*unbiased=*/false).item<double>();
  y = (y / (first_std > 0 ? first_std : 1.0) * 1e-4).contiguous();

  at::Tensor dense;
  SparseAffinities sparse;
  if (exact) {
    dense = exact_affinities(x, result.perplexity);
  } else {
    sparse = sparse_affinities(x, result.perplexity);
  }
  auto update = at::zeros_like(y), gains = at::ones_like(y);
  for (int iteration = 1; iteration <= options.iterations; ++iteration) {
    const bool early = iteration <= options.exaggeration_iterations;
    const double exaggeration = early ? options.early_exaggeration : 1.0;
    const double momentum = early ? kMomentumEarly : kMomentumLate;
    auto gradient = exact ? exact_gradient(dense, y, exaggeration) : barnes_hut_gradient(sparse, y, options.theta, exaggeration);
    const auto increase = (update * gradient) < 0.0;
    gains = at::where(increase, gains + 0.2, gains * 0.8).clamp_min(kMinGain);
    update = momentum * update - result.learning_rate * (gradient * gains);
    y = (y + update).contiguous();
    if (options.on_iteration) options.on_iteration(iteration);
  }
  double kl = 0;
  if (exact) {
    exact_gradient(dense, y, 1.0, &kl);
  } else {
    barnes_hut_gradient(sparse, y, options.theta, 1.0, &kl);
  }
  result.kl_divergence = kl;
  result.embedding = y;
  return result;
}

}  // namespace vitprobe
