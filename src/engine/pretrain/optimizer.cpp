#include "pretrain/optimizer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "common/errors.h"

namespace vitprobe {

AdamW::AdamW(std::vector<TrainableTensor> parameters, AdamWOptions options)
    : parameters_(std::move(parameters)), options_(options) {
  for (const auto& parameter : parameters_) {
    if (!parameter.tensor.defined() || !parameter.tensor.requires_grad()) {
      throw BadInput("AdamW: tensor '" + parameter.name + "' is not a leaf that requires grad");
    }
    first_moments_.push_back(at::zeros_like(parameter.tensor, at::MemoryFormat::Contiguous));
    second_moments_.push_back(at::zeros_like(parameter.tensor, at::MemoryFormat::Contiguous));
  }
}

void AdamW::step(double lr, double weight_decay) {
  at::NoGradGuard no_grad;
  ++step_count_;
  const double correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_count_));
  const double correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_count_));
  const double step_size = lr / correction1;
  const double sqrt_correction2 = std::sqrt(correction2);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    at::Tensor tensor = parameters_[i].tensor;
    const at::Tensor& grad = tensor.grad();
    if (!grad.defined()) continue;
    if (parameters_[i].weight_decay && weight_decay != 0.0) tensor.mul_(1.0 - lr * weight_decay);
    first_moments_[i].mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    second_moments_[i].mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    const at::Tensor denominator = (second_moments_[i].sqrt() / sqrt_correction2).add_(options_.eps);
    tensor.addcdiv_(first_moments_[i], denominator, -step_size);
  }
}

void AdamW::zero_grad() {
  for (auto& parameter : parameters_) parameter.tensor.mutable_grad() = at::Tensor();
}

std::vector<double> clip_gradients_per_tensor(const std::vector<TrainableTensor>& parameters, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<double> norms;
  for (const auto& parameter : parameters) {
    at::Tensor grad = parameter.tensor.grad();
    if (!grad.defined()) continue;
    const double norm = grad.norm().item<double>();
    norms.push_back(norm);
    const double coefficient = max_norm / (norm + 1e-6);
    if (coefficient < 1.0) grad.mul_(coefficient);
  }
  return norms;
}

double warmup_cosine(double base, double final, double epoch, double warmup_epochs, double total_epochs) {
  if (epoch < warmup_epochs) return base * epoch / warmup_epochs;
  const double span = total_epochs - warmup_epochs;
  if (span <= 0) return base;
  const double progress = std::min(1.0, (epoch - warmup_epochs) / span);
  return final + (base - final) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double cosine_decay(double base, double final, int64_t iteration, int64_t total_iterations) {
  if (total_iterations <= 0) return base;
  const double progress = std::min(1.0, static_cast<double>(iteration) / static_cast<double>(total_iterations));
  return final + (base - final) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double teacher_temperature(double warmup_temperature, double final_temperature, int warmup_epochs, int64_t epoch) {
  if (epoch >= warmup_epochs) return final_temperature;
  if (warmup_epochs == 1) return warmup_temperature;
  return warmup_temperature +
         (final_temperature - warmup_temperature) * static_cast<double>(epoch) / static_cast<double>(warmup_epochs - 1);
}

}  // namespace vitprobe
