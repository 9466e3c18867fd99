#pragma once
// Weighted k-NN classification on L2-normalised features (Wu et al. 2018, as in DINO's eval_knn.py): the k
// most cosine-similar training items vote for their class with weight exp(similarity / T).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace vitprobe {

/// Top-1 / top-5 accuracy (in %) for one k.
struct KnnAccuracy {
  int k = 0;
  double top1 = 0, top5 = 0;
};

/// Classifies every row of `val_features` (M, F) against `train_features` (N, F) (float32, not yet normalised)
/// for each k in `ks` (k larger than N is clamped to N); `chunk` val rows are compared at a time.
std::vector<KnnAccuracy> knn_classify(const at::Tensor& train_features, const at::Tensor& train_labels,
                                      const at::Tensor& val_features, const at::Tensor& val_labels,
                                      int64_t num_classes, const std::vector<int>& ks, double temperature,
                                      int64_t chunk = 256);

}  // namespace vitprobe
