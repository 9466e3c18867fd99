#pragma once
// The optimisation pieces pretraining shares: AdamW written out from its published update (Loshchilov and
// Hutter, ICLR 2019; PyTorch's torch.optim.AdamW), per-tensor gradient clipping (DINO's clip_gradients) and
// the warm-up + half-cosine schedules of MAE (util/lr_sched.py) and DINO (utils.cosine_scheduler).
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace vitprobe {

/// One trained tensor: a fp32 leaf with requires_grad, its checkpoint name and whether weight decay applies.
struct TrainableTensor {
  std::string name;
  at::Tensor tensor;
  bool weight_decay = true;
};

/// Hyper-parameters of AdamW; lr and weight_decay are set per step by the schedules.
struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

/// AdamW with decoupled weight decay, exactly torch.optim.AdamW (amsgrad off, maximize off):
/// p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
class AdamW {
 public:
  /// Keeps references to the tensors (updated in place); moments start at zero.
  AdamW(std::vector<TrainableTensor> parameters, AdamWOptions options);

  /// One update with the current gradients; tensors without a gradient are left alone. `weight_decay` applies
  /// to the tensors marked for it only (biases, norms and other 1-D tensors are not decayed).
  void step(double lr, double weight_decay);
  /// Drops every gradient (sets it undefined, as zero_grad(set_to_none=True)).
  void zero_grad();

  const std::vector<TrainableTensor>& parameters() const { return parameters_; }
  /// Updates done so far (the t of the bias corrections).
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t count) { step_count_ = count; }
  /// The first and second moments, in parameter order, for checkpoints.
  std::vector<at::Tensor>& first_moments() { return first_moments_; }
  std::vector<at::Tensor>& second_moments() { return second_moments_; }

 private:
  std::vector<TrainableTensor> parameters_;
  AdamWOptions options_;
  std::vector<at::Tensor> first_moments_, second_moments_;
  int64_t step_count_ = 0;
};

/// Scales the gradient of every tensor whose gradient L2 norm exceeds `max_norm` down to that norm (DINO's
/// per-parameter clip_gradients, clip_coef = max_norm / (norm + 1e-6)); returns the norms before clipping.
std::vector<double> clip_gradients_per_tensor(const std::vector<TrainableTensor>& parameters, double max_norm);

/// Linear warm-up from 0 to `base` over `warmup_epochs`, then a half-cosine from `base` to `final`, as a
/// function of the fractional epoch (MAE's adjust_learning_rate, called with epoch + step / steps_per_epoch).
double warmup_cosine(double base, double final, double epoch, double warmup_epochs, double total_epochs);

/// DINO's cosine_scheduler without warm-up, per iteration: final + (base - final) * (1 + cos(pi * i / n)) / 2.
double cosine_decay(double base, double final, int64_t iteration, int64_t total_iterations);

/// DINO's teacher temperature for an epoch: np.linspace(warmup, final, warmup_epochs) for the first
/// warmup_epochs epochs (both ends included), then `final`.
double teacher_temperature(double warmup_temperature, double final_temperature, int warmup_epochs, int64_t epoch);

}  // namespace vitprobe
