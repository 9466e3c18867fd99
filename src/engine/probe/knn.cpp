#include "probe/knn.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "common/errors.h"

namespace vitprobe {
namespace {

at::Tensor l2_normalise(const at::Tensor& features) {
  const auto x = features.to(at::kFloat);
  return x / x.norm(2, {1}, true).clamp_min(1e-12);
}

}  // namespace

std::vector<KnnAccuracy> knn_classify(const at::Tensor& train_features, const at::Tensor& train_labels,
                                      const at::Tensor& val_features, const at::Tensor& val_labels,
                                      int64_t num_classes, const std::vector<int>& ks, double temperature,
                                      int64_t chunk) {
  at::NoGradGuard no_grad;
  const int64_t n_train = train_features.size(0), n_val = val_features.size(0);
  if (n_train == 0 || n_val == 0) throw BadInput("knn: no training or no validation items");
  if (ks.empty()) throw BadInput("knn: no k given");
  const auto train = l2_normalise(train_features);
  const auto val = l2_normalise(val_features).to(train.device());
  const auto labels = train_labels.to(train.device(), at::kLong);
  const auto targets = val_labels.to(train.device(), at::kLong);
  const int64_t max_k = std::min<int64_t>(*std::max_element(ks.begin(), ks.end()), n_train);
  const int64_t top = std::min<int64_t>(5, num_classes);
  std::vector<int64_t> correct1(ks.size(), 0), correct5(ks.size(), 0);
  for (int64_t start = 0; start < n_val; start += chunk) {
    const int64_t end = std::min(start + chunk, n_val);
    const auto similarity = at::matmul(val.slice(0, start, end), train.t());
    const auto [distances, indices] = similarity.topk(max_k, 1, true, true);
    const auto neighbours = labels.index_select(0, indices.reshape({-1})).view(indices.sizes());
    const auto votes_per_neighbour = (distances / temperature).exp();
    const auto target = targets.slice(0, start, end).unsqueeze(1);
    for (size_t i = 0; i < ks.size(); ++i) {
      const int64_t k = std::min<int64_t>(ks[i], n_train);
      auto votes = at::zeros({end - start, num_classes}, similarity.options());
      votes.scatter_add_(1, neighbours.slice(1, 0, k), votes_per_neighbour.slice(1, 0, k));
      const auto predictions = std::get<1>(votes.topk(top, 1, true, true));
      correct1[i] += predictions.slice(1, 0, 1).eq(target).sum().item<int64_t>();
      correct5[i] += predictions.eq(target).any(1).sum().item<int64_t>();
    }
  }
  std::vector<KnnAccuracy> results;
  for (size_t i = 0; i < ks.size(); ++i) {
    results.push_back({ks[i], 100.0 * correct1[i] / n_val, 100.0 * correct5[i] / n_val});
  }
  return results;
}

}  // namespace vitprobe
