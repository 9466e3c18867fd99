#pragma once
// Hand-written optimizers for the probe heads, step for step as in PyTorch / the official MAE code, and the
// learning-rate schedule of MAE's linear probing (util/lr_sched.py).
//   lars   MAE util/lars.py: for parameters with ndim > 1, dp = g + wd p scaled by the trust ratio
//          trust_coefficient * |p| / |dp| (1 when either norm is 0); 1-d parameters (biases) take g as is;
//          mu = momentum mu + dp; p -= lr mu.
//   sgd    torch.optim.SGD (momentum, dampening 0, no Nesterov): buf = momentum buf + g + wd p, p -= lr buf; as
//          beyond_cls main_linprobe.py:332 the decay applies to every parameter and momentum is 0 unless given.
//   adamw  torch.optim.AdamW (amsgrad off): p *= 1 - lr wd; m, v moments; p -= lr m_hat / (sqrt(v_hat) + eps).
// lars and adamw apply weight decay to parameters with ndim > 1 only (MAE's LARS and add_weight_decay leave
// biases and 1-d parameters out). Gradients are read from the parameters' .grad().
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "probe/poolers.h"

namespace vitprobe {

/// Which optimizer and its hyper-parameters (the learning rate comes with every step).
struct OptimizerOptions {
  std::string kind = "lars";  // lars | sgd | adamw
  double momentum = 0.9;      // lars, sgd (the CLI gives sgd 0, the official default, unless --momentum is passed)
  double weight_decay = 0.0;
  double trust_coefficient = 0.001;  // lars
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adamw
};

/// Updates a fixed list of parameters; holds the per-parameter state.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  /// One update with learning rate `lr` from the current gradients (parameters without a gradient are skipped).
  virtual void step(double lr) = 0;
  /// Sets every gradient to zero (drops them).
  void zero_grad();
  /// The optimizer state as named tensors ("<parameter>.<slot>", plus "step" for adamw), for resuming.
  virtual std::vector<NamedTensor> state() const = 0;
  /// Restores state() output; throws BadInput naming `source` when a tensor is missing or has another shape.
  virtual void load_state(const std::map<std::string, at::Tensor>& tensors, const std::string& source) = 0;

 protected:
  explicit Optimizer(std::vector<NamedTensor> parameters) : parameters_(std::move(parameters)) {}
  std::vector<NamedTensor> parameters_;
};

/// Builds the optimizer `options.kind` over `parameters`; throws BadInput for an unknown kind.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options, std::vector<NamedTensor> parameters);

/// Linear warm-up then half-cosine, evaluated at a fractional epoch (MAE adjust_learning_rate):
///   epoch < warmup:  lr * epoch / warmup
///   otherwise:       min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * (epoch - warmup) / (epochs - warmup)))
struct LearningRateSchedule {
  double warmup_epochs = 10;
  double epochs = 90;
  double min_lr = 0.0;
  /// The learning rate at `epoch` (fractional) for peak learning rate `lr`.
  double at(double epoch, double lr) const;
};

/// The peak learning rate of a base learning rate: blr * effective_batch / 256 (MAE / Goyal et al.).
double scaled_learning_rate(double base_lr, int64_t effective_batch);

}  // namespace vitprobe
