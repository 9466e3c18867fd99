#include "pretrain/dino.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "common/errors.h"

namespace vitprobe {
namespace {

at::Tensor trunc_normal(at::IntArrayRef shape, double std, at::Generator& generator) {
  auto normal_cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  const double low = 2.0 * normal_cdf(-2.0) - 1.0;
  const double high = 2.0 * normal_cdf(2.0) - 1.0;
  auto values = at::zeros(shape).uniform_(low, high, generator);
  values.erfinv_().mul_(std * std::sqrt(2.0));
  return values.clamp_(-2.0, 2.0);
}

}  // namespace

DinoHeadWeights init_dino_head(int in_dim, const DinoHeadShape& shape, at::Generator& generator) {
  if (shape.hidden_dim <= 0 || shape.bottleneck_dim <= 0 || shape.out_dim <= 0) {
    throw BadInput("DINO head: hidden " + std::to_string(shape.hidden_dim) + ", bottleneck " +
                   std::to_string(shape.bottleneck_dim) + " and out " + std::to_string(shape.out_dim) +
                   " must be positive");
  }
  DinoHeadWeights head;
  head.fc1_weight = trunc_normal({shape.hidden_dim, in_dim}, 0.02, generator);
  head.fc1_bias = at::zeros({shape.hidden_dim});
  head.fc2_weight = trunc_normal({shape.hidden_dim, shape.hidden_dim}, 0.02, generator);
  head.fc2_bias = at::zeros({shape.hidden_dim});
  head.fc3_weight = trunc_normal({shape.bottleneck_dim, shape.hidden_dim}, 0.02, generator);
  head.fc3_bias = at::zeros({shape.bottleneck_dim});
  const double bound = 1.0 / std::sqrt(static_cast<double>(shape.bottleneck_dim));
  head.last_v = at::zeros({shape.out_dim, shape.bottleneck_dim}).uniform_(-bound, bound, generator);
  for (auto& tensor : head_tensors(head, "")) tensor.tensor.set_requires_grad(true);
  return head;
}

std::vector<TrainableTensor> head_tensors(DinoHeadWeights& head, const std::string& prefix) {
  return {{prefix + "mlp.0.weight", head.fc1_weight, true},   {prefix + "mlp.0.bias", head.fc1_bias, false},
          {prefix + "mlp.2.weight", head.fc2_weight, true},   {prefix + "mlp.2.bias", head.fc2_bias, false},
          {prefix + "mlp.4.weight", head.fc3_weight, true},   {prefix + "mlp.4.bias", head.fc3_bias, false},
          {prefix + "last_layer.weight_v", head.last_v, true}};
}

at::Tensor dino_head_forward(const DinoHeadWeights& head, const at::Tensor& features) {
  auto x = at::gelu(at::linear(features, head.fc1_weight, head.fc1_bias));
  x = at::gelu(at::linear(x, head.fc2_weight, head.fc2_bias));
  x = at::linear(x, head.fc3_weight, head.fc3_bias);
  // F.normalize(x, dim=-1, p=2): x / max(||x||, 1e-12).
  x = x / at::linalg_vector_norm(x, 2, {-1}, /*keepdim=*/true).clamp_min(1e-12);
  const auto weight = head.last_v / at::linalg_vector_norm(head.last_v, 2, {1}, /*keepdim=*/true);
  return at::linear(x, weight);
}

at::Tensor dino_loss(const at::Tensor& student_output, const at::Tensor& teacher_output, const at::Tensor& center,
                     int64_t num_crops, double student_temperature, double teacher_temperature) {
  if (student_output.size(0) % num_crops != 0 || teacher_output.size(0) % 2 != 0 ||
      student_output.size(0) / num_crops != teacher_output.size(0) / 2) {
    throw BadInput("dino_loss: " + std::to_string(student_output.size(0)) + " student rows for " +
                   std::to_string(num_crops) + " crops do not match " + std::to_string(teacher_output.size(0)) +
                   " teacher rows for 2 global crops");
  }
  const auto student = (student_output / student_temperature).chunk(num_crops);
  const auto teacher = at::softmax((teacher_output - center) / teacher_temperature, -1).detach().chunk(2);
  at::Tensor total;
  int64_t terms = 0;
  for (size_t teacher_crop = 0; teacher_crop < teacher.size(); ++teacher_crop) {
    for (size_t student_crop = 0; student_crop < student.size(); ++student_crop) {
      if (student_crop == teacher_crop) continue;
      const auto loss = (-teacher[teacher_crop] * at::log_softmax(student[student_crop], -1)).sum(-1).mean();
      total = total.defined() ? total + loss : loss;
      ++terms;
    }
  }
  return total / static_cast<double>(terms);
}

at::Tensor updated_center(const at::Tensor& center, const at::Tensor& teacher_output, double momentum) {
  at::NoGradGuard no_grad;
  const auto batch_center =
      teacher_output.detach().sum(0, /*keepdim=*/true) / static_cast<double>(teacher_output.size(0));
  return center * momentum + batch_center * (1.0 - momentum);
}

void ema_update(const std::vector<at::Tensor>& teacher, const std::vector<at::Tensor>& student, double momentum) {
  if (teacher.size() != student.size()) {
    throw BadInput("ema_update: " + std::to_string(teacher.size()) + " teacher tensors for " +
                   std::to_string(student.size()) + " student tensors");
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < teacher.size(); ++i) {
    // param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
    at::Tensor target = teacher[i];
    target.mul_(momentum).add_(student[i].detach(), 1.0 - momentum);
  }
}

}  // namespace vitprobe
