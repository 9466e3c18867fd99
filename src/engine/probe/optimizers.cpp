#include "probe/optimizers.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <set>

#include "common/errors.h"

namespace vitprobe {
namespace {

// Named slot tensors, one per parameter, created lazily as zeros like the parameter.
class SlotState {
 public:
  SlotState(std::vector<std::string> slots) : slots_(std::move(slots)) {}

  at::Tensor& get(const std::string& parameter, const std::string& slot, const at::Tensor& like) {
    auto& tensor = tensors_[parameter + "." + slot];
    if (!tensor.defined()) tensor = at::zeros_like(like, at::MemoryFormat::Contiguous);
    return tensor;
  }

  std::vector<NamedTensor> named() const {
    std::vector<NamedTensor> out;
    for (const auto& [name, tensor] : tensors_) out.emplace_back(name, tensor);
    return out;
  }

  void load(const std::map<std::string, at::Tensor>& tensors, const std::vector<NamedTensor>& parameters,
            const std::string& source) {
    tensors_.clear();
    for (const auto& [parameter, value] : parameters) {
      for (const auto& slot : slots_) {
        const auto found = tensors.find(parameter + "." + slot);
        if (found == tensors.end()) continue;  // never stepped: created on first use
        if (found->second.sizes() != value.sizes()) {
          throw BadInput(source + ": optimizer state '" + found->first + "' does not match its parameter's shape");
        }
        tensors_[found->first] = found->second.to(value.device(), at::kFloat).clone();
      }
    }
  }

 private:
  std::vector<std::string> slots_;
  std::map<std::string, at::Tensor> tensors_;
};

class Lars final : public Optimizer {
 public:
  Lars(const OptimizerOptions& options, std::vector<NamedTensor> parameters)
      : Optimizer(std::move(parameters)), options_(options), state_({"mu"}) {}

  void step(double lr) override {
    at::NoGradGuard no_grad;
    for (auto& [name, parameter] : parameters_) {
      const auto& grad = parameter.grad();
      if (!grad.defined()) continue;
      at::Tensor update = grad;
      if (parameter.dim() > 1) {
        update = grad.add(parameter, options_.weight_decay);
        const auto parameter_norm = at::norm(parameter);
        const auto update_norm = at::norm(update);
        const auto one = at::ones_like(parameter_norm);
        const auto trust = at::where(parameter_norm > 0.0,
                                     at::where(update_norm > 0.0, options_.trust_coefficient * parameter_norm / update_norm, one),
                                     one);
        update = update.mul(trust);
      }
      auto& mu = state_.get(name, "mu", parameter);
      mu.mul_(options_.momentum).add_(update);
      parameter.add_(mu, -lr);
    }
  }

  std::vector<NamedTensor> state() const override { return state_.named(); }
  void load_state(const std::map<std::string, at::Tensor>& tensors, const std::string& source) override {
    state_.load(tensors, parameters_, source);
  }

 private:
  OptimizerOptions options_;
  SlotState state_;
};

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& options, std::vector<NamedTensor> parameters)
      : Optimizer(std::move(parameters)), options_(options), state_({"momentum_buffer"}) {}

  void step(double lr) override {
    at::NoGradGuard no_grad;
    for (auto& [name, parameter] : parameters_) {
      const auto& grad = parameter.grad();
      if (!grad.defined()) continue;
      // torch.optim.SGD(head.parameters(), weight_decay=wd) as beyond_cls main_linprobe.py:332: every parameter
      // decays, biases included.
      at::Tensor update = options_.weight_decay != 0.0 ? grad.add(parameter, options_.weight_decay) : grad;
      if (options_.momentum != 0.0) {
        // torch.optim.SGD: the first step copies the gradient into the buffer.
        const bool first = !has_buffer(name);
        auto& buffer = state_.get(name, "momentum_buffer", parameter);
        if (first) {
          buffer.copy_(update);
        } else {
          buffer.mul_(options_.momentum).add_(update);
        }
        update = buffer;
        started_.insert(name);
      }
      parameter.add_(update, -lr);
    }
  }

  std::vector<NamedTensor> state() const override { return state_.named(); }
  void load_state(const std::map<std::string, at::Tensor>& tensors, const std::string& source) override {
    state_.load(tensors, parameters_, source);
    started_.clear();
    for (const auto& [name, parameter] : parameters_) {
      if (tensors.count(name + ".momentum_buffer")) started_.insert(name);
    }
  }

 private:
  bool has_buffer(const std::string& name) const { return started_.count(name) > 0; }
  OptimizerOptions options_;
  SlotState state_;
  std::set<std::string> started_;
};

class AdamW final : public Optimizer {
 public:
  AdamW(const OptimizerOptions& options, std::vector<NamedTensor> parameters)
      : Optimizer(std::move(parameters)), options_(options), state_({"exp_avg", "exp_avg_sq"}) {}

  void step(double lr) override {
    at::NoGradGuard no_grad;
    ++steps_;
    const double correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
    const double correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
    for (auto& [name, parameter] : parameters_) {
      const auto& grad = parameter.grad();
      if (!grad.defined()) continue;
      if (parameter.dim() > 1 && options_.weight_decay != 0.0) parameter.mul_(1.0 - lr * options_.weight_decay);
      auto& exp_avg = state_.get(name, "exp_avg", parameter);
      auto& exp_avg_sq = state_.get(name, "exp_avg_sq", parameter);
      exp_avg.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
      exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
      const auto denominator = (exp_avg_sq.sqrt() / std::sqrt(correction2)).add_(options_.eps);
      parameter.addcdiv_(exp_avg, denominator, -lr / correction1);
    }
  }

  std::vector<NamedTensor> state() const override {
    auto named = state_.named();
    named.emplace_back("step", at::full({1}, static_cast<double>(steps_), at::kDouble));
    return named;
  }
  void load_state(const std::map<std::string, at::Tensor>& tensors, const std::string& source) override {
    state_.load(tensors, parameters_, source);
    const auto found = tensors.find("step");
    if (found == tensors.end()) throw BadInput(source + ": adamw state has no 'step'");
    steps_ = static_cast<int64_t>(found->second.to(at::kDouble).item<double>());
  }

 private:
  OptimizerOptions options_;
  SlotState state_;
  int64_t steps_ = 0;
};

}  // namespace

void Optimizer::zero_grad() {
  for (auto& [name, parameter] : parameters_) {
    if (parameter.grad().defined()) parameter.mutable_grad() = at::Tensor();
  }
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options, std::vector<NamedTensor> parameters) {
  if (options.kind == "lars") return std::make_unique<Lars>(options, std::move(parameters));
  if (options.kind == "sgd") return std::make_unique<Sgd>(options, std::move(parameters));
  if (options.kind == "adamw") return std::make_unique<AdamW>(options, std::move(parameters));
  throw BadInput("unknown optimizer '" + options.kind + "' (lars, sgd, adamw)");
}

double LearningRateSchedule::at(double epoch, double lr) const {
  if (epoch < warmup_epochs) return lr * epoch / warmup_epochs;
  const double span = epochs - warmup_epochs;
  const double progress = span > 0 ? (epoch - warmup_epochs) / span : 1.0;
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double scaled_learning_rate(double base_lr, int64_t effective_batch) {
  return base_lr * static_cast<double>(effective_batch) / 256.0;
}

}  // namespace vitprobe
